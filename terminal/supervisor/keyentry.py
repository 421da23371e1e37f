"""The supervisor switch at the kiosk: F8 on the PIN pad, then the supervisor key.

Why the PIN pad: a field engineer or a branch replenisher stands at a running kiosk with
nothing but its keyboard. F8 is not offered on the customer's screen (the page cannot
send it); it is read only between customers, from the idle or out-of-service screen, so
it never reaches into a session. The key is typed in clear entry (digits); the screen
shows it as ``*``, and it goes nowhere but :meth:`SupervisorConsole.enter`, which checks
it against the config's salted scrypt hashes and keeps nothing of it. Wrong keys are
counted in a row: after ``attempts`` the entry is locked for ``lockout`` seconds
(journaled ``supervisor_locked``, never with key material).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from atm_common.errors import AtmError
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.fsm.customer import State
from terminal.supervisor.console import SupervisorConsole
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.polling import read_keys
from terminal.ui import Screen

log = logging.getLogger(__name__)

SWITCH_KEY = "F8"  # the "supervisor switch": on the PIN pad only, never on the page
KEY_DIGITS = 16  # the longest key the entry takes
KEY_TIMEOUT = 30.0  # seconds to type the key
LOCKED_SHOWN = 3.0  # seconds the "locked" screen stays before the idle screen is back
IDLE_STATES = (State.IDLE, State.OUT_OF_SERVICE)


class SupervisorSwitch:
    """F8 between customers, the key, and the lockout after wrong keys."""

    def __init__(
        self, console: SupervisorConsole, *, lockout: float = 300.0, attempts: int = 3
    ) -> None:
        self.console = console
        self.lockout, self.attempts = lockout, attempts
        self.failures = 0  # wrong keys in a row
        self.locked_until = float("-inf")  # terminal clock (monotonic)
        self.stop: asyncio.Event | None = None  # the kiosk loop's (polling.Stopped when set)

    def pressed(self) -> bool:
        """F8 is waiting on the PIN pad between customers (consumed then); never when no
        supervisor key is configured, in a session or already in supervisor mode."""
        t = self.console.terminal
        if not self.console.mode.keys or t.supervisor is not None or t.state not in IDLE_STATES:
            return False
        try:
            if t.devices.pinpad.key_pending() != SWITCH_KEY:
                return False
            t.devices.pinpad.discard_pending_key()
        except AtmError:
            return False  # a PIN pad that cannot say: the loop's own checks deal with it
        return True

    def locked_for(self) -> float:
        """Seconds the key entry stays locked (0 when open)."""
        return max(0.0, self.locked_until - self.console.terminal.clock.monotonic())

    async def take_key(self) -> bool:
        """Ask for the key until it is right (True: supervisor mode entered), CANCEL, a
        timeout or the lockout (False: back to the idle screen)."""
        t = self.console.terminal
        pinpad = t.devices.pinpad
        if (left := self.locked_for()) > 0:
            self._show_locked(left)
            return False
        problem = ""
        while True:
            t.display.show(Screen.SUPERVISOR_KEY, problem=problem)
            entry = await read_keys(
                pinpad, t.clock, max_digits=KEY_DIGITS, timeout=KEY_TIMEOUT, stop=self.stop
            )
            if entry.outcome is not EntryOutcome.ENTERED:
                self.back()
                return False
            if not entry.keys:
                problem = "Type the key first."
                continue
            try:
                await self.console.enter(entry.keys)
            except SupervisorError as exc:
                if t.supervisor is not None:  # in, but the host did not take the 0800/171
                    log.warning("supervisor mode entered, host not told: %s", exc)
                    self.failures = 0  # the right key: the count of wrong ones starts again
                    return True
                self.failures += 1
                t.journal.record("supervisor_key_refused", attempt=self.failures)
                if self.failures >= self.attempts:
                    self._lock()
                    return False
                problem = str(exc).capitalize() + "."
                continue
            self.failures = 0
            return True

    def _lock(self) -> None:
        t = self.console.terminal
        self.locked_until = t.clock.monotonic() + self.lockout
        t.journal.record("supervisor_locked", failures=self.failures, seconds=self.lockout)
        log.warning(
            "supervisor key entry locked for %.0f s after %d wrong keys",
            self.lockout,
            self.failures,
        )
        self.failures = 0
        self._show_locked(self.lockout)

    def _show_locked(self, seconds: float) -> None:
        t = self.console.terminal
        t.display.show(Screen.SUPERVISOR_LOCKED, seconds=f"{seconds:.0f}")
        with contextlib.suppress(AtmError):  # the message stays a moment (CANCEL cuts it)
            t.devices.pinpad.read_keys(max_digits=0, timeout=LOCKED_SHOWN, function_keys=False)
        self.back()

    def back(self) -> None:
        """The screen the terminal was on before F8 (after a failure too)."""
        t = self.console.terminal
        t.display.show(Screen.WELCOME if t.state is State.IDLE else Screen.OUT_OF_SERVICE)
