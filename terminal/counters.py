"""Counters that must survive a restart: the STAN and the session number.

A restarted terminal that began again at STAN 000001 could, within the same second,
send a request the host takes for a repeat of one it already answered (its duplicate key
is terminal id + STAN + transmission time). So the last STAN is written on every use
(WAL, synchronous=NORMAL: survives ``kill -9``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from atm_common.files import private_database
from host_link.client import StanSequence

SCHEMA = "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"


class DurableStan(StanSequence):
    def __init__(self, path: Path | str) -> None:
        private_database(path)  # like every file the terminal writes: 0600, dir 0700
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)
        row = self._conn.execute("SELECT value FROM counters WHERE name = 'stan'").fetchone()
        super().__init__(row[0] if row else 0)

    def next(self) -> str:
        value = super().next()
        self._conn.execute(
            "INSERT INTO counters VALUES ('stan', ?) ON CONFLICT(name) DO UPDATE SET value = ?",
            (self.last, self.last),
        )
        return value

    def close(self) -> None:
        self._conn.close()
