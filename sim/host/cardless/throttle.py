"""Throttles and lockout for the cardless credentials: SMS codes, reservation codes, faces.

Why: a phone session allows only ``phone_attempts`` wrong SMS codes, but sessions cost
nothing, so one client could open them as fast as the host answered (hundreds of
guesses a second, every new session texting the victim), and an ATM could try every
phone number. After NIST SP 800-63B (5.2.2: at most 100 consecutive failed attempts per
account, with rate limiting before that) the host keeps three kinds of count:

- :class:`PhoneGuard`, in the database so a restart does not forget it: consecutive
  failed checks per phone number (wrong SMS codes and face mismatches on the phone, wrong
  codes, faces or methods at ATMs); a success resets it. ``lockout_failures`` of them
  (at most 100) lock cardless withdrawal for that number until the bank deletes the row.
  It counts per number whether or not a customer has it, so its answers say nothing
  about who banks here.
- :class:`Limiter`, in memory: per key (a phone number, a client address, an ATM),
  ``free`` events back to back, then each next one must wait twice as long as the one
  before (``base``, ``2 base``, ... at most ``cap``); events older than ``window`` are
  forgotten. It limits new sessions per phone and per address (and so the SMS sent),
  failed SMS codes per address, and failed cardless checks per ATM.
- :class:`ThrottlePolicy`: the limiters' settings, in one place.

A throttled or locked attempt is refused before the credential is looked at, so it
teaches the caller nothing and is not counted.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import sqlite3

from atm_common.clock import Clock
from atm_common.masking import mask_phone
from sim.host.cardless.errors import TooManyRequests

__all__ = ["Backoff", "Limiter", "PhoneGuard", "ThrottlePolicy"]

log = logging.getLogger(__name__)

LOCKOUT_MAX = 100  # NIST SP 800-63B 5.2.2: no more consecutive failures than this


@dataclasses.dataclass(frozen=True)
class Backoff:
    """``free`` events back to back, then waits of ``base`` x 2^k seconds (at most
    ``cap``) before the k-th event over ``free``; only events of the last ``window``
    seconds count."""

    free: int
    base: float
    cap: float
    window: float

    def delay(self, recent: int) -> float:
        """The wait after the newest of ``recent`` events before the next one."""
        if recent < self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(recent - self.free, 40))


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    """How fast new sessions and failed checks may come (the demo needs five sessions
    of one phone in a row; a customer rarely needs more than two)."""

    sessions_per_phone: Backoff = Backoff(free=5, base=60, cap=3600, window=3600)
    sessions_per_address: Backoff = Backoff(free=20, base=10, cap=3600, window=3600)
    code_failures_per_address: Backoff = Backoff(free=10, base=5, cap=3600, window=3600)
    failures_per_terminal: Backoff = Backoff(free=10, base=30, cap=1800, window=3600)


class Limiter:
    """Events per key with exponential backoff (see :class:`Backoff`), in memory.

    At most ``max_keys`` keys are kept: beyond that the forgotten ones go first, then the
    oldest, so a flood of new keys costs memory only up to that bound.
    """

    def __init__(self, policy: Backoff, clock: Clock, what: str, max_keys: int = 50_000) -> None:
        self.policy, self.clock, self.what, self.max_keys = policy, clock, what, max_keys
        self._events: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and now - events[0] >= self.policy.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float:
        """Seconds before the next event for ``key`` is allowed (0: now)."""
        now = self.clock.monotonic()
        events = self._recent(key, now)
        if events is None:
            return 0.0
        return max(0.0, self.policy.delay(len(events)) - (now - events[-1]))

    def check(self, key: str) -> None:
        """Raise :class:`TooManyRequests` while ``key`` must wait; records nothing."""
        wait = self.retry_after(key)
        if wait > 0:
            seconds = math.ceil(wait)
            raise TooManyRequests(f"too many {self.what}: try again in {seconds} s", seconds)

    def hit(self, key: str) -> None:
        """Record an event for ``key``."""
        now = self.clock.monotonic()
        events = self._recent(key, now)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            # a saturated count only means the longest wait: no need to keep more
            events = self._events[key] = collections.deque(maxlen=self.policy.free + 64)
        events.append(now)

    def _prune(self, now: float) -> None:
        for key in list(self._events):
            self._recent(key, now)
        for key in list(self._events)[: max(0, len(self._events) - self.max_keys // 2)]:
            del self._events[key]


class PhoneGuard:
    """Consecutive failed cardless checks per phone number, and the lockout they lead
    to (``cardless_phone_guard``, in the caller's transaction)."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock, limit: int) -> None:
        if not 1 <= limit <= LOCKOUT_MAX:
            raise ValueError(f"lockout_failures must be 1..{LOCKOUT_MAX}, not {limit}")
        self.conn, self.clock, self.limit = conn, clock, limit

    def locked(self, digits: str) -> bool:
        row = self.conn.execute(
            "SELECT failures FROM cardless_phone_guard WHERE phone = ?", (digits,)
        ).fetchone()
        return row is not None and int(row[0]) >= self.limit

    def failed(self, digits: str) -> bool:
        """Count a failed check; True when this one locked the number."""
        now = self.clock.now().isoformat()
        self.conn.execute(
            "INSERT INTO cardless_phone_guard (phone, failures, last_failure) VALUES (?, 1, ?)"
            " ON CONFLICT (phone) DO UPDATE SET failures = cardless_phone_guard.failures + 1,"
            " last_failure = ?",
            (digits, now, now),
        )
        (failures,) = self.conn.execute(
            "SELECT failures FROM cardless_phone_guard WHERE phone = ?", (digits,)
        ).fetchone()
        if failures != self.limit:
            return False
        self.conn.execute(
            "UPDATE cardless_phone_guard SET locked_at = ? WHERE phone = ?", (now, digits)
        )
        log.warning(
            "cardless locked for phone %s after %d consecutive failed checks",
            mask_phone(digits),
            failures,
        )
        return True

    def passed(self, digits: str) -> None:
        """A success ends the run of failures (never a lockout: nothing is checked then)."""
        self.conn.execute(
            "DELETE FROM cardless_phone_guard WHERE phone = ? AND failures < ?",
            (digits, self.limit),
        )

    def unlock(self, digits: str) -> None:
        """The bank's decision, after it has spoken to its customer."""
        self.conn.execute("DELETE FROM cardless_phone_guard WHERE phone = ?", (digits,))
