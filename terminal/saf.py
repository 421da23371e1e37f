"""Store-and-forward queue: reversals and advices that must reach the host, durably.

An entry is written (SQLite WAL, synchronous=FULL) *before* the first attempt, so a
crash or ``kill -9`` cannot lose it; several entries made together (the parts of a
snapshot upload) are written in one transaction, one fsync for all. Entries go out
strictly in order; a failure stops the drain (a later reversal never overtakes an earlier
one) and schedules a retry with exponential backoff. A repeat is sent with the repeat MTI
(0400 -> 0401, 0420 -> 0421) but the same STAN and transmission time, so the host
recognises it. An entry that exhausts its retry budget moves to the exception queue for a
field engineer (``atm diag saf``): never dropped.

What the host answered is written once per drain (or per :data:`MARK_BATCH` answers), not
once per entry: a crash before that write only means an entry goes out again as it went
before, which the host answers with its original response (its duplicate key is terminal
id + STAN + transmission time).

Entries hold no card data: reversals identify the original by field 90 alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from atm_common.clock import Clock
from atm_common.errors import ProtocolError, SecurityError
from host_link.client import HostClient
from host_link.codec import Message
from host_link.errors import HostLinkError
from terminal.errors import DeviceError, JournalError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS saf (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'exception')),
    response_code TEXT,
    last_error TEXT
);
"""
FORBIDDEN_FIELDS = ("2", "35", "52", "110")
REPEAT_MTI = {"0400": "0401", "0420": "0421", "0620": "0621"}
DONE_CODES = frozenset({"00"})  # processed, or acknowledged as nothing to undo
# Not processed, or the host cannot say (format, keys, issuer, host failure): ask again.
# A reversal answered 30 or 63 is never given up on: that answer may come from a man in
# the middle, and a reversal dropped is a customer debited for cash they never got.
RETRY_CODES = frozenset({"30", "63", "91", "96"})
MARK_BATCH = 32  # answers written per commit during a long drain


@dataclasses.dataclass(frozen=True)
class SafEntry:
    id: int
    created: str
    message: Message
    attempts: int
    status: str
    response_code: str | None
    last_error: str | None


class SafQueue:
    def __init__(
        self,
        path: Path | str,
        clock: Clock,
        *,
        max_attempts: int = 10,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
    ) -> None:
        self.clock = clock
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._marks: list[tuple[str, tuple[object, ...]]] = []  # answers not yet written

    def enqueue(self, message: Mapping[str, str]) -> int:
        """Persist ``message`` (already stamped with STAN and field 7) for delivery."""
        return self.enqueue_all([message])[0]

    def enqueue_all(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Persist ``messages`` in order, all or none, with one durable commit."""
        for message in messages:
            for field in FORBIDDEN_FIELDS:
                if field in message:
                    raise JournalError(f"refusing to store field {field} in the SAF queue")
        if not messages:
            return []
        created = self.clock.now().isoformat()
        ids: list[int] = []
        self._conn.execute("BEGIN")
        try:
            for message in messages:
                cursor = self._conn.execute(
                    "INSERT INTO saf (created, message) VALUES (?, ?)",
                    (created, json.dumps(dict(message))),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        for message in messages:
            log.info("SAF: queued %s STAN %s", message.get("t"), message.get("11"))
        return ids

    def entries(self, status: str | None = None) -> list[SafEntry]:
        query, args = "SELECT * FROM saf", tuple[str, ...]()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [SafEntry(r[0], r[1], json.loads(r[2]), r[3], r[5], r[6], r[7]) for r in rows]

    @property
    def pending(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM saf WHERE status = 'pending'").fetchone()
        return int(n)

    def _delay(self, attempts: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1)))

    async def drain(self, host: HostClient, *, force: bool = False) -> int:
        """Send due entries in order until one fails; returns how many were acknowledged.

        ``force`` ignores the backoff schedule (start-up reconciliation, a field engineer).
        """
        sent = 0
        now = self.clock.now().timestamp()
        rows = self._conn.execute(
            "SELECT id, message, attempts, next_attempt FROM saf WHERE status = 'pending'"
            " ORDER BY id"
        ).fetchall()
        try:
            for entry_id, text, attempts, next_attempt in rows:
                if not force and next_attempt > now:
                    break
                acknowledged = await self._send(host, entry_id, text, attempts)
                if acknowledged is None:
                    break
                sent += acknowledged
                if len(self._marks) >= MARK_BATCH:
                    self._write_marks()
        finally:
            self._write_marks()  # no await in here: the write lock is held only this long
        return sent

    async def _send(self, host: HostClient, entry_id: int, text: str, attempts: int) -> int | None:
        """Send one entry: 1 if acknowledged, 0 if refused for good (to the exception
        queue, the drain goes on), None if it failed (the drain stops: order is kept)."""
        message: Message = json.loads(text)
        if attempts:
            message["t"] = REPEAT_MTI.get(message["t"], message["t"])
        try:
            response = await host.request(message)
        except (HostLinkError, ProtocolError, SecurityError, DeviceError) as exc:
            self._failed(entry_id, attempts + 1, str(exc))
            return None
        code = response.get("39", "")
        if code in RETRY_CODES:
            self._failed(entry_id, attempts + 1, f"host answered {code}: not processed")
            return None
        if code not in DONE_CODES:
            # the host looked and refused (format, amount): retrying cannot help
            self._to_exceptions(entry_id, attempts + 1, f"host refused with {code}")
            return 0
        self._mark(
            "UPDATE saf SET status = 'done', attempts = ?, response_code = ? WHERE id = ?",
            (attempts + 1, code, entry_id),
        )
        log.info("SAF: %s STAN %s acknowledged (%s)", message["t"], message.get("11"), code)
        return 1

    def _mark(self, sql: str, args: tuple[object, ...]) -> None:
        """An answer to write with the drain's next batch (see :meth:`_write_marks`)."""
        self._marks.append((sql, args))

    def _write_marks(self) -> None:
        """Write the answers noted so far, in one transaction: one fsync for the batch."""
        if not self._marks:
            return
        marks, self._marks = self._marks, []
        self._conn.execute("BEGIN")
        try:
            for sql, args in marks:
                self._conn.execute(sql, args)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _to_exceptions(self, entry_id: int, attempts: int, error: str) -> None:
        self._mark(
            "UPDATE saf SET status = 'exception', attempts = ?, last_error = ? WHERE id = ?",
            (attempts, error, entry_id),
        )
        log.error(
            "SAF: entry %d moved to the exception queue (%d attempts): %s",
            entry_id,
            attempts,
            error,
        )

    def _failed(self, entry_id: int, attempts: int, error: str) -> None:
        if attempts >= self.max_attempts:
            self._to_exceptions(entry_id, attempts, error)
            return
        self._mark(
            "UPDATE saf SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
            (attempts, self.clock.now().timestamp() + self._delay(attempts), error, entry_id),
        )
        log.warning("SAF: entry %d attempt %d failed: %s", entry_id, attempts, error)

    def requeue_exceptions(self) -> int:
        """A field engineer's retry of the exception queue."""
        cursor = self._conn.execute(
            "UPDATE saf SET status = 'pending', attempts = 0, next_attempt = 0"
            " WHERE status = 'exception'"
        )
        return cursor.rowcount

    def close(self) -> None:
        self._conn.close()
