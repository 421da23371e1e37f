"""The Display behind the kiosk page: the screen's whole state, owned by the terminal.

The session names a screen (:meth:`KioskDisplay.show`); this object keeps what is shown
now (screen, values, language, the PIN length as a count, digits typed in clear entry)
and hands every change to the page as a full snapshot, so a page that reloads or
reconnects gets exactly the current screen back. Keys from the page are accepted only if
the current screen's template offers them, and then reach the session through the PIN
pad's :class:`~terminal.drivers.pinpad.base.ScreenKeys`; everything else is refused.

The PIN pad tells this display about each press (``*`` for a PIN digit, never which);
the display never sees a PIN digit, so neither can the page.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from terminal.drivers.pinpad.base import CLEAR, PinPad, ScreenKeys
from terminal.kiosk.i18n import DEFAULT_LANGUAGE, LANGUAGES
from terminal.kiosk.screens import localise, render
from terminal.ui import Image, Screen

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]
PIN_SCREENS = (Screen.ENTER_PIN, Screen.ENTER_CODE, Screen.ENTER_PERSONAL_CODE)
CLEAR_ENTRY_SCREENS = (
    Screen.ENTER_AMOUNT,
    Screen.CARDLESS_PHONE,
    Screen.SUPERVISOR_MENU,
    Screen.SUPERVISOR_COUNT,
)
# Clear entry shown as '*': the supervisor key is typed in clear mode, never shown.
MASKED_SCREENS = (Screen.SUPERVISOR_KEY,)


class KioskDisplay:
    """Renders screens for the page; thread-safe (the session's thread shows, the
    server's thread reads snapshots and presses keys)."""

    def __init__(
        self,
        *,
        echo: Callable[[str], None] | None = None,
        heartbeat: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._listeners: list[Callable[[Snapshot], None]] = []
        self.keys = ScreenKeys()
        self.screen = Screen.OUT_OF_SERVICE
        self.values: dict[str, Any] = {}
        self.language = DEFAULT_LANGUAGE
        self.pin_length = 0
        self.typed = ""
        self.heartbeat = heartbeat
        self._clock = clock
        self._last_answer: float | None = None
        self._echo = echo
        self._snapshot = self._build()

    # --- the terminal's side ------------------------------------------------------------

    def attach(self, pinpad: PinPad) -> None:
        """Take the pad's key events and give it this screen's keys."""
        pinpad.attach_screen(self.keys, self.pad_key)

    def show(self, screen: Screen, **values: Any) -> None:
        with self._lock:
            if screen is Screen.WELCOME and self.screen is not Screen.WELCOME:
                self.language = DEFAULT_LANGUAGE  # a new customer chooses afresh
            if screen is not self.screen:
                # a key meant for the last screen means nothing now; one for this screen
                # shown again (the approval countdown, every poll) is still the answer
                self.keys.clear()
            self.screen, self.values = screen, dict(values)
            self.pin_length, self.typed = 0, ""
            self._publish()
        if self._echo is not None:
            self._echo(screen.value.format(**values))

    def pad_key(self, key: str) -> None:
        """A press the PIN pad reports: counts ``*`` on a PIN screen, echoes clear digits."""
        with self._lock:
            if self.screen in PIN_SCREENS or self.screen in MASKED_SCREENS:
                if key == "*" or (self.screen in MASKED_SCREENS and key.isdigit()):
                    self.pin_length += 1
                elif key == CLEAR:
                    self.pin_length = 0
                else:
                    return
            elif self.screen in CLEAR_ENTRY_SCREENS:
                if len(key) == 1 and key.isdigit():
                    self.typed += key
                elif key == CLEAR:
                    self.typed = ""
                else:
                    return
            else:
                return
            self._publish()

    def responsive(self) -> bool:
        """A page answered the heartbeat recently (none ever did: not responsive)."""
        with self._lock:
            last = self._last_answer
        return last is not None and self._clock() - last <= 3 * self.heartbeat

    # --- the page's side ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def answered(self) -> None:
        """The page answered a heartbeat (or connected)."""
        with self._lock:
            self._last_answer = self._clock()

    def press(self, key: str) -> bool:
        """A key from the page: True if the current screen offers it (then it is acted
        on), False if refused (nothing changes)."""
        with self._lock:
            if key not in self._snapshot["keys"]:
                log.info("screen key %r refused on %s", key[:12], self.screen.name)
                return False
            if key.startswith("LANG:"):
                self.choose_language(key.split(":", 1)[1])
                return True
        self.keys.press(key)
        return True

    def choose_language(self, code: str) -> None:
        """The customer's language, for the rest of the session."""
        if code not in LANGUAGES:
            raise ValueError(f"unknown language {code!r}")
        with self._lock:
            self.language = code
            self._publish()

    def subscribe(self, listener: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``listener`` with every new snapshot; returns the unsubscribe call."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # --- internals ------------------------------------------------------------------------

    def _build(self) -> Snapshot:
        rendered = render(self.screen, self.values, self.language, self.pin_length, self.typed)
        return {
            "type": "snapshot",
            "seq": next(self._seq),
            "screen": self.screen.name,
            "language": self.language,
            "lang": LANGUAGES[self.language].html,
            "text": rendered.text,
            "html": rendered.html,
            "keys": list(rendered.keys),
            "pin_length": self.pin_length,
            "values": {
                name: (
                    {"type": "image", "src": str(value)}
                    if isinstance(value, Image)
                    else {"type": "text", "text": str(localise(value, self.language))}
                )
                for name, value in self.values.items()
            },
        }

    def _publish(self) -> None:
        self._snapshot = self._build()
        for listener in list(self._listeners):
            listener(self._snapshot)
