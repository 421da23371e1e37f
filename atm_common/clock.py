"""Injected clocks, so timeouts and soak runs replay exactly.

Library code never calls ``time.time``/``time.sleep`` directly: it asks a :class:`Clock`.
:class:`SystemClock` is the real one; :class:`ManualClock` only moves when told, which is
how simulated devices "wait" for a customer who never acts: they advance the clock by the
timeout and report it, instantly and deterministically.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """What every time-aware component needs."""

    def now(self) -> dt.datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (a simulated wait). The system clock only records it."""
        ...


class SystemClock:
    """The real clock. ``advance`` does not sleep: real devices wait on their own I/O."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        return None


class ManualClock:
    """A clock that moves only when advanced; starts at a fixed instant for replayable runs."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._start = start or dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
        self._elapsed = 0.0

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._elapsed += seconds
