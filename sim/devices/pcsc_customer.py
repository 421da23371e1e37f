"""The customer at a PC/SC reader: virtual cards in and out of a real pcscd.

Each inserted card is a :mod:`sim.devices.vcard` process inside the pcscd namespace
(:class:`~sim.devices.pcsc_env.PcscEnv`). A plain PC/SC reader has no motor, so the
customer pulls the card out when the screen says "Please take your card", which is how
this class learns when to do it: it watches the display.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sim.devices.pcsc_env import SLOT_PORTS, CardProcess, PcscEnv
from sim.devices.vcard import CardProfile, load_seed_card
from terminal.drivers.card_reader.base import CardData
from terminal.ui import Display, Screen

log = logging.getLogger(__name__)

# A reason a scenario gives for an unreadable card -> the virtual card's broken mode.
UNREADABLE_MODES = {
    "chip mute": "mute",
    "bad data": "bad_tlv",
    "unknown application": "unknown_aid",
}


class PcscCustomer:
    """Implements the scenario ``CardCustomer`` protocol with real virtual cards."""

    def __init__(self, env: PcscEnv, seed: Path, port: int = SLOT_PORTS[0]) -> None:
        self.env, self.seed, self.port = env, seed, port
        self._card: CardProcess | None = None
        self._takes = True

    def insert(self, card: CardData | None = None, *, unreadable: str | None = None) -> None:
        self._pull()
        if card is not None:
            profile = load_seed_card(self.seed, card.pan)
        else:
            profile = CardProfile(pan="4761739001010010", expiry="3012", name="BROKEN CARD")
        mode = UNREADABLE_MODES.get(unreadable or "", "bad_tlv") if unreadable else "normal"
        self._card = self.env.start_card(profile, port=self.port, mode=mode)
        self._card.insert()
        self._takes = True

    def script_take_card(self, taken: bool) -> None:
        self._takes = taken

    def on_screen(self, screen: Screen) -> None:
        if screen is Screen.TAKE_CARD and self._takes:
            self._pull(wait_gone=False)

    def _pull(self, wait_gone: bool = True) -> None:
        if self._card is not None:
            self._card.remove(wait_gone=wait_gone)
            self._card.stop()
            self._card = None

    def close(self) -> None:
        self._pull()


class WatchedDisplay:
    """Shows screens on ``inner`` and lets the customer see them too."""

    def __init__(self, inner: Display, customer: PcscCustomer) -> None:
        self.inner, self.customer = inner, customer

    def show(self, screen: Screen, **values: Any) -> None:
        self.inner.show(screen, **values)
        self.customer.on_screen(screen)
