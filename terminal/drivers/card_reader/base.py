"""Card reader ABC: wait for a card, read it, eject or retain it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from abc import abstractmethod

from atm_common.masking import mask_pan
from terminal.drivers.base import Device
from terminal.errors import DeviceError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, repr=False)
class CardData:
    """What the terminal learns from a card. ``repr`` masks the PAN and track 2."""

    pan: str
    expiry: str  # YYMM, as in ISO 8583 field 14 and EMV 5F24 (first 4 digits)
    track2: str = ""  # track 2 equivalent, '=' separator
    name: str = ""
    service_code: str = ""

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def expires_before(self, when: dt.date) -> bool:
        year, month = 2000 + int(self.expiry[:2]), int(self.expiry[2:4])
        return (year, month) < (when.year, when.month)

    def __repr__(self) -> str:
        return f"CardData(pan={self.masked_pan!r}, expiry={self.expiry!r}, name={self.name!r})"


class CardUnreadable(DeviceError):
    """A card is present but cannot be read (mute, bad data, unknown application)."""


class CardReader(Device):
    kind = "card_reader"

    def wait_for_card(self, timeout: float | None = None) -> bool:
        """Block until a card is inserted; False when ``timeout`` passes first."""
        self._require_open()
        return self._do_wait_for_card(timeout)

    def read_card(self) -> CardData:
        """Read the inserted card. Raises :class:`CardUnreadable` with the reason."""
        self._require_open()
        card = self._do_read_card()
        log.info("card read: %s", card.masked_pan)
        return card

    def eject(self, take_timeout: float) -> bool:
        """Return the card; True when the customer took it within ``take_timeout``."""
        self._require_open()
        return self._do_eject(take_timeout)

    def retain(self) -> None:
        """Capture the card into the retain bin."""
        self._require_open()
        self._do_retain()
        log.warning("card retained")

    @property
    def retained_count(self) -> int:
        return self._do_retained_count()

    def _do_counter_values(self) -> dict[str, int]:
        return {"retained": self._do_retained_count()}

    @abstractmethod
    def _do_wait_for_card(self, timeout: float | None) -> bool: ...

    @abstractmethod
    def _do_read_card(self) -> CardData: ...

    @abstractmethod
    def _do_eject(self, take_timeout: float) -> bool: ...

    @abstractmethod
    def _do_retain(self) -> None: ...

    @abstractmethod
    def _do_retained_count(self) -> int: ...
