"""Counters that must survive a restart: the STAN.

A restarted terminal that began again at STAN 000001 could, within the same second,
send a request the host takes for a repeat of one it already answered (its duplicate key
is terminal id + STAN + transmission time). So a restarted terminal must never reuse a
STAN it may have sent. Writing the STAN on every use would cost a commit per message;
instead the terminal reserves a block of STANs with one durable commit (WAL,
``synchronous=FULL``) and hands them out from memory. After a crash it starts past the
whole reserved block: at most :data:`BLOCK` numbers are skipped, none is reused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from atm_common.files import private_database
from host_link.client import StanSequence

SCHEMA = "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
BLOCK = 1000  # STANs per durable reservation: one commit per ~500 sessions


class DurableStan(StanSequence):
    def __init__(self, path: Path | str, *, block: int = BLOCK) -> None:
        private_database(path)  # like every file the terminal writes: 0600, dir 0700
        self.block = block
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(SCHEMA)
        row = self._conn.execute("SELECT value FROM counters WHERE name = 'stan'").fetchone()
        # 'stan' is the end of the last reserved block: everything up to it may have been sent
        super().__init__(row[0] if row else 0)
        self._left = 0  # STANs still reserved (none until the first use)

    def next(self) -> str:
        if self._left == 0:
            end = (self.last + self.block - 1) % 999_999 + 1  # the STAN wraps like the sequence
            self._conn.execute(
                "INSERT INTO counters VALUES ('stan', ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                (end, end),
            )
            self._left = self.block
        self._left -= 1
        return super().next()

    def close(self) -> None:
        self._conn.close()
