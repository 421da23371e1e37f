"""Cassette counters that survive a restart: loaded, dispensed, rejected, retracted.

Why they are kept apart from the dispenser: the device counts notes it moved since it
was powered; balancing needs what happened since the last *exchange*, across restarts.
Remaining is derived (loaded - dispensed - rejected), so the books cannot disagree with
themselves. One SQLite file, private, every change one durable commit: a cash movement
is rare next to its cost.

Who books what: dispensed by :meth:`CashCounters.sync` (the load less what the dispenser
reports), retracted by the sessions' cash path. Rejected has no caller yet: a dispense's
``DispenseResult`` does not say per cassette what went to the reject bin, so a rejected
note counts as dispensed here and the column stays 0; the supervisor counts the reject
bin at the exchange, and the host's balancing counts those notes as found.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from atm_common.files import private_database
from host_link.supervision import CassetteCount

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cassettes (position INTEGER PRIMARY KEY,"
    " denomination INTEGER NOT NULL, capacity INTEGER NOT NULL, loaded INTEGER NOT NULL,"
    " dispensed INTEGER NOT NULL, rejected INTEGER NOT NULL, retracted INTEGER NOT NULL)"
)


class CashCounters:
    def __init__(self, path: Path | str) -> None:
        private_database(path)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(SCHEMA)

    def cassettes(self) -> list[CassetteCount]:
        return [
            CassetteCount(pos, denom, loaded, dispensed, rejected, retracted,
                          loaded - dispensed - rejected)
            for pos, denom, loaded, dispensed, rejected, retracted in self._conn.execute(
                "SELECT position, denomination, loaded, dispensed, rejected, retracted"
                " FROM cassettes ORDER BY position"
            )
        ]  # fmt: skip

    def capacities(self) -> dict[int, tuple[int, int]]:
        """position -> (denomination, capacity)."""
        rows = self._conn.execute("SELECT position, denomination, capacity FROM cassettes")
        return {pos: (denom, cap) for pos, denom, cap in rows}

    def configure(self, cassettes: Iterable[tuple[int, int, int]]) -> None:
        """(position, denomination, capacity) of each cassette; keeps existing counts."""
        with self._conn:
            self._conn.execute("BEGIN")
            for pos, denom, cap in cassettes:
                self._conn.execute(
                    "INSERT INTO cassettes VALUES (?,?,?,0,0,0,0) ON CONFLICT (position)"
                    " DO UPDATE SET denomination = excluded.denomination,"
                    " capacity = excluded.capacity",
                    (pos, denom, cap),
                )

    def record(self, position: int, *, dispensed: int = 0, rejected: int = 0,
               retracted: int = 0) -> None:  # fmt: skip
        """Notes that left cassette ``position`` (a dispense, a reject, a retract); today
        only retracts are booked here (see the module docstring)."""
        self._conn.execute(
            "UPDATE cassettes SET dispensed = dispensed + ?, rejected = rejected + ?,"
            " retracted = retracted + ? WHERE position = ?",
            (dispensed, rejected, retracted, position),
        )

    def sync(self, present: dict[int, int]) -> None:
        """What the dispenser reports in each cassette now: the notes gone since the load
        (less those counted as rejected) are the dispensed ones. Run before balancing,
        so counters and device agree without a write on every dispense."""
        with self._conn:
            self._conn.execute("BEGIN")
            for pos, count in present.items():
                self._conn.execute(
                    "UPDATE cassettes SET dispensed = MAX(loaded - rejected - ?, 0)"
                    " WHERE position = ?",
                    (count, pos),
                )

    def load(self, counts: dict[int, int]) -> None:
        """A new load: these counts in, every other counter back to zero (one commit)."""
        with self._conn:
            self._conn.execute("BEGIN")
            for pos, count in counts.items():
                self._conn.execute(
                    "UPDATE cassettes SET loaded = ?, dispensed = 0, rejected = 0,"
                    " retracted = 0 WHERE position = ?",
                    (count, pos),
                )

    def close(self) -> None:
        self._conn.close()
