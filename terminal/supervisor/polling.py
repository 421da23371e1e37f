"""The supervisor's prompts read the PIN pad in short windows, so the kiosk's stop is seen.

Why: a PIN pad read blocks the kiosk loop (the desk runs on it) until a key or its
timeout, and a supervisor prompt waits up to ``[supervisor] idle_timeout`` (300 s).
SIGTERM sets the loop's stop event through the event loop, which runs only when the desk
yields: one long read would keep ``atm run`` from stopping for minutes. So, given the
stop event, a prompt reads in windows of :data:`POLL` s, yields between them and looks at
the event (:class:`Stopped` when set). The prompt's own timeout is unchanged: the windows
add up to it.

A window that runs out ends the pad's entry, with whatever was typed in it. The pad
reports every press (:meth:`PinPad.reported`; clear entry reports the digit itself), so
the presses are watched across the windows and the entry's digits are rebuilt from all
of them: a digit typed just before a window ended and ENTER just after still make one
entry. A pad that reports nothing (a scripted sim pad) answers whole entries anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from atm_common.clock import Clock
from terminal.drivers.pinpad.base import CLEAR, EntryOutcome, KeyEntry, PinPad

POLL = 1.0  # s per read window: a stop is seen within about this
YIELD = 0.01  # s given to the event loop between windows (signals, the status reporter)


class Stopped(Exception):
    """The kiosk loop's stop event is set: control flow of the desk, never raised out of it."""


async def read_keys(
    pinpad: PinPad,
    clock: Clock,
    *,
    max_digits: int,
    timeout: float,
    stop: asyncio.Event | None,
) -> KeyEntry:
    """Clear entry (digits + ENTER, no function keys) within ``timeout`` s; without
    ``stop`` one read as before, with it windows of :data:`POLL` s (:class:`Stopped`)."""
    if stop is None:
        return pinpad.read_keys(max_digits=max_digits, timeout=timeout, function_keys=False)
    deadline = clock.monotonic() + timeout
    pressed: list[str] = []
    while True:
        if stop.is_set():
            raise Stopped
        window = min(deadline - clock.monotonic(), POLL)
        if window <= 0:
            return KeyEntry(EntryOutcome.TIMEOUT)
        with _watching(pinpad, pressed):
            entry = pinpad.read_keys(max_digits=max_digits, timeout=window, function_keys=False)
        if entry.outcome is EntryOutcome.ENTERED:
            keys = _typed(pressed, max_digits) if pressed else entry.keys
            return KeyEntry(EntryOutcome.ENTERED, keys)
        if entry.outcome is not EntryOutcome.TIMEOUT:
            return entry
        await asyncio.sleep(YIELD)


def _typed(pressed: list[str], max_digits: int) -> str:
    """The digits a clear entry holds after ``pressed`` (as the pad keeps them: the first
    ``max_digits``, CLEAR starts again)."""
    digits = ""
    for key in pressed:
        if key == CLEAR:
            digits = ""
        elif len(key) == 1 and key.isdigit():
            digits = (digits + key)[:max_digits]
    return digits


@contextmanager
def _watching(pinpad: PinPad, pressed: list[str]) -> Iterator[None]:
    """The pad's presses go to ``pressed`` too (and on to the screen, as before)."""
    listener = pinpad.key_listener

    def heard(key: str) -> None:
        pressed.append(key)
        if listener is not None:
            listener(key)

    pinpad.key_listener = heard
    try:
        yield
    finally:
        pinpad.key_listener = listener
