"""In-process simulated card reader: a state holder driven by a scripted customer.

Why it exists: unit tests and headless scenario runs need a card reader that behaves like
one (a throat that holds at most one card, cards that can be mute, customers who forget
their card) without pcscd. Nothing here sleeps: a customer who never comes or never takes
the card is modelled by advancing the injected clock by the timeout, so a
:class:`~atm_common.clock.ManualClock` run replays exactly.

The customer's side of the reader is the scripting API: :meth:`SimCardReader.insert`,
:meth:`SimCardReader.script_take_card` and the ``cards`` queue of customers waiting in
line. The terminal's side is the :class:`~terminal.drivers.card_reader.base.CardReader`
ABC.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Mapping, Sequence

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError, LocalProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.card_reader.base import CardData, CardReader, CardUnreadable

log = logging.getLogger(__name__)

# The public ISO 9564 test PAN (see docs), so a bare ``insert()`` gives a usable card.
DEFAULT_TEST_CARD = CardData(
    pan="4012345678909",
    expiry="3012",
    track2="4012345678909=30121010000000000000",
    name="TEST/CARDHOLDER",
    service_code="101",
)


@dataclasses.dataclass(frozen=True)
class _InThroat:
    """The card in the reader: readable data, or the reason it is mute."""

    card: CardData | None
    unreadable: str | None


def _as_card(item: CardData | Mapping[str, str], position: int) -> CardData:
    """Accept CardData or a config table with CardData's fields (TOML gives dicts)."""
    if isinstance(item, CardData):
        return item
    try:
        return CardData(**dict(item))
    except TypeError as exc:
        raise ConfigError("config", f"devices.card_reader.cards[{position}]", str(exc)) from None


class SimCardReader(CardReader):
    """A card reader whose customer is a script.

    ``cards`` are customers waiting in line: when the throat is empty,
    :meth:`wait_for_card` takes the next one as if the customer had inserted it.
    """

    blocking = False  # in-process state: nothing to wait on

    def __init__(
        self,
        clock: Clock | None = None,
        cards: Sequence[CardData | Mapping[str, str]] = (),
    ) -> None:
        super().__init__()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._queue: collections.deque[CardData] = collections.deque(
            _as_card(item, i) for i, item in enumerate(cards)
        )
        self._throat: _InThroat | None = None
        self._take_script: collections.deque[bool] = collections.deque()
        self._retained: list[CardData | None] = []

    def __repr__(self) -> str:
        return (
            f"SimCardReader(card_present={self.card_present}, queued={len(self._queue)}, "
            f"retained={len(self._retained)})"
        )

    # -- the scripted customer ------------------------------------------------------------

    def insert(self, card: CardData | None = None, *, unreadable: str | None = None) -> None:
        """The customer inserts a card now.

        ``card=None`` takes the next queued card (or :data:`DEFAULT_TEST_CARD`).
        ``unreadable`` makes the card mute: :meth:`read_card` then raises
        :class:`CardUnreadable` naming this reason.
        """
        if self._throat is not None:
            raise LocalProtocolError("card_reader: a card is already in the throat")
        if card is None and unreadable is None:
            card = self._queue.popleft() if self._queue else DEFAULT_TEST_CARD
        self._throat = _InThroat(card, unreadable)
        log.debug(
            "customer inserted %s%s",
            card.masked_pan if card is not None else "a card",
            f" (unreadable: {unreadable})" if unreadable else "",
        )

    def script_take_card(self, taken: bool) -> None:
        """Queue whether the customer takes the card at the next eject (default: taken)."""
        self._take_script.append(taken)

    def clear_take_script(self) -> None:
        """Forget queued choices no eject used (a session that ended without one)."""
        self._take_script.clear()

    @property
    def card_present(self) -> bool:
        """A card is in the throat (inserted, or ejected but not taken)."""
        return self._throat is not None

    @property
    def retained(self) -> tuple[CardData | None, ...]:
        """Cards in the retain bin, oldest first (None for a mute card with no data)."""
        return tuple(self._retained)

    @property
    def queued(self) -> int:
        """Customers still waiting in line with a card."""
        return len(self._queue)

    # -- the terminal's side ----------------------------------------------------------------

    def _do_status(self) -> DeviceStatus:
        return DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        return {"card_present": self.card_present}

    def _do_wait_for_card(self, timeout: float | None) -> bool:
        if self._throat is None and self._queue:
            self.insert(self._queue.popleft())
        if self._throat is not None:
            return True
        if timeout is not None:
            self._clock.advance(timeout)
        return False

    def _do_read_card(self) -> CardData:
        if self._throat is None:
            raise CardUnreadable(self.kind, "no card in the reader")
        if self._throat.unreadable is not None or self._throat.card is None:
            reason = self._throat.unreadable or "mute card"
            raise CardUnreadable(self.kind, f"card unreadable: {reason}")
        return self._throat.card

    def _do_eject(self, take_timeout: float) -> bool:
        if self._throat is None:
            raise LocalProtocolError("card_reader: eject with no card in the reader")
        taken = self._take_script.popleft() if self._take_script else True
        if taken:
            self._throat = None
            return True
        # The customer walked away: the card stays in the throat for retain().
        self._clock.advance(take_timeout)
        return False

    def _do_retain(self) -> None:
        if self._throat is None:
            raise LocalProtocolError("card_reader: retain with no card in the reader")
        self._retained.append(self._throat.card)
        self._throat = None

    def _do_retained_count(self) -> int:
        return len(self._retained)
