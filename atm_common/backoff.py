"""Retry delays that grow, stop growing, and never line up: exponential, capped, jittered.

Why: a kiosk that lost its host (or a device) must retry, but not as fast as it can: one
retry after 1 s, then 2, 4 ... up to ``cap``, so a host that restarts is not hammered by
every terminal at once and a MAC failure is not logged a hundred times a second. The
jitter (each delay shortened by up to ``jitter`` of itself, at random) keeps a fleet of
terminals that lost the host together from coming back together.
"""

from __future__ import annotations

import random


class Backoff:
    """``next()``: the delay before the next attempt; ``reset()`` after a success."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a share of the delay: 0 <= jitter < 1")
        self.base, self.cap, self.jitter = base, cap, jitter
        self._rng = rng or random.Random()
        self.attempts = 0  # failures since the last success

    def next(self) -> float:
        """Seconds to wait after one more failure: ``base * 2**n`` capped, minus jitter."""
        delay = min(self.cap, self.base * 2.0 ** min(self.attempts, 62))
        self.attempts += 1
        return float(delay * (1 - self.jitter * self._rng.random()))

    def reset(self) -> None:
        self.attempts = 0
