"""The electronic journal: every event of every session, append-only, on disk.

SQLite in WAL mode, ``synchronous=FULL``: a commit survives ``kill -9`` and a power cut.
But a commit is an fsync, and a session has two dozen events, so the journal does not
commit each one: it commits where a crash must find a record (NDC's points of no return,
see docs/durability.md). ``record(..., durable=True)`` commits that event and every event
buffered before it in one transaction; any other session event waits in the open
transaction for the next durable one (the session's end is always durable). A crash loses
only events recorded since the last durable one, none of which recovery needs. Events
outside a session (start, sign-on, service changes) are rare and committed at once.

Records are JSON objects checked on the way in: keys that could carry a PIN, PIN block,
key or track data are refused outright, ``pan`` values are masked to first 6 / last 4,
and any other run of 13-19 digits in a string is masked too, as a last line of defence.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atm_common.clock import Clock
from atm_common.files import private_database
from atm_common.masking import mask_pan
from terminal.errors import JournalError

FORBIDDEN_KEYS = re.compile(r"(^|_)(pin|pinblock|pin_block|key|track2|track|cvv|cvc)($|_)")
ALLOWED_KEYS = frozenset({"pin_tries", "pin_entries", "key_check_value"})
PAN_LIKE = re.compile(r"(?<!\d)\d{13,19}(?!\d)")

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    session TEXT,
    event TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


@dataclasses.dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    session: str | None
    event: str
    data: dict[str, Any]

    def line(self) -> str:
        details = " ".join(f"{k}={v}" for k, v in self.data.items())
        session = self.session or "-"
        return f"{self.seq:>6} {self.time} {session:<12} {self.event:<22} {details}".rstrip()


def _scrub(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if FORBIDDEN_KEYS.search(str(k).lower()) and k not in ALLOWED_KEYS:
                raise JournalError(f"refusing to journal sensitive field {k!r}")
            out[str(k)] = _scrub(v, str(k))
        return out
    if isinstance(value, (list, tuple)):
        return [_scrub(v, key) for v in value]
    if isinstance(value, str):
        if key == "pan":
            return mask_pan(value)
        return PAN_LIKE.sub(lambda m: mask_pan(m.group()), value)
    if isinstance(value, (bytes, bytearray)):
        raise JournalError(f"refusing to journal raw bytes in {key or 'record'!r}")
    return value


class Journal:
    def __init__(self, path: Path | str, clock: Clock) -> None:
        self.path = Path(path)
        private_database(self.path)  # masked PANs, amounts, RRNs: the owner's alone
        self.clock = clock
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # every commit is a point of no return
        self._conn.executescript(SCHEMA)

    def record(
        self, event: str, session: str | None = None, *, durable: bool = False, **data: Any
    ) -> int:
        """Append one event. ``durable``: commit it, and every event buffered before it,
        to stable storage before returning (one fsync). Otherwise a session's event waits
        in the open transaction for the next durable record; an event with no session is
        committed at once."""
        clean = _scrub(data)
        row = (
            self.clock.now().isoformat(timespec="milliseconds"),
            session,
            event,
            json.dumps(clean),
        )
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        cursor = self._conn.execute(
            "INSERT INTO journal (time, session, event, data) VALUES (?,?,?,?)", row
        )
        if durable or session is None:
            self.commit()
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def commit(self) -> None:
        """Write the buffered events to stable storage now (nothing to do if none)."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def tail(self, count: int = 20, session: str | None = None) -> list[Entry]:
        query = "SELECT * FROM journal"
        args: tuple[Any, ...] = ()
        if session is not None:
            query += " WHERE session = ?"
            args = (session,)
        rows = self._conn.execute(query + " ORDER BY seq DESC LIMIT ?", (*args, count)).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]

    def latest(self, *events: str) -> Entry | None:
        """The most recent entry that is one of ``events`` (e.g. whether an exchange sent
        to the host was ever seen to end)."""
        marks = ",".join("?" * len(events))
        row = self._conn.execute(
            f"SELECT * FROM journal WHERE event IN ({marks}) ORDER BY seq DESC LIMIT 1", events
        ).fetchone()
        return None if row is None else Entry(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def last_session(self) -> tuple[str | None, list[Entry]]:
        """The most recent session id and all its entries (for crash recovery)."""
        row = self._conn.execute(
            "SELECT session FROM journal WHERE session IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None, []
        return row[0], self.tail(100_000, session=row[0])

    def close(self, *, commit: bool = True) -> None:
        """Close the journal, committing what is buffered; ``commit=False`` is what a
        killed process leaves behind: the buffered events are rolled back (the crash
        tests use it)."""
        if commit:
            self.commit()
        self._conn.close()


def read_tail(path: Path, count: int) -> list[Entry]:
    """Read the last entries of a journal another process may be writing."""
    if not path.exists():
        raise JournalError(
            f"{path}: no journal here; has the terminal run with this config? (--config FILE)"
        )
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM journal ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a journal ({exc})") from exc
    finally:
        conn.close()
    return [Entry(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]
