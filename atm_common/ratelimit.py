"""Log lines that a peer can provoke, at a rate nobody can turn into a flood.

A client that sends garbage as fast as it can must not fill the disk or drown the one
line that matters: each kind of message is logged at most ``burst`` times per ``window``
seconds; the rest are counted and summed up in the next line that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """``log(key, level, msg, *args)``: at most ``burst`` lines per ``key`` per ``window`` s."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        window: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.burst, self.window, self.monotonic = logger, burst, window, monotonic
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, logged, dropped)

    def log(self, key: str, level: int, msg: str, *args: object) -> bool:
        """Log unless ``key`` is over its budget; True when the line was written."""
        now = self.monotonic()
        start, logged, dropped = self._windows.get(key, (now, 0, 0))
        if now - start >= self.window:
            start, logged = now, 0
        if logged >= self.burst:
            self._windows[key] = (start, logged, dropped + 1)
            return False
        if dropped:
            msg += " (%d similar lines suppressed)"
            args = (*args, dropped)
        self._windows[key] = (start, logged + 1, 0)
        if len(self._windows) > 1024:  # keys come from a bounded set; never grow unbounded
            self._windows.pop(next(iter(self._windows)))
        self.logger.log(level, msg, *args)
        return True
