"""The alarm center's durable store: validated alarms on disk, and conflicts kept apart.

An alarm acknowledged is an alarm on disk: SQLite in WAL mode with ``synchronous=FULL``,
each alarm (or follow-up) in one ``BEGIN IMMEDIATE`` transaction. Evidence (camera
frames) lives in its own table so listings stay small.

``alarm_id`` is the idempotency key, and a key alone proves nothing about content. An
identical repeat (same digest) is the outbox retrying after a lost answer: stored once,
acknowledged again. The same id with *other* content is a conflict: somebody else used
the id, or the sender is broken. Answering it as a duplicate once let a forged alarm,
posted first under the id the real one would get, turn the real one into a "delivered"
alarm with a false location. So a conflict is recorded in ``conflicts`` (the refused
copy, without its evidence bytes) for a person to look at, and reported to the caller as
such; it never counts as a delivery. Follow-ups (``update_id``) follow the same rule.

What an alarm must look like is :mod:`sim.alarm_center.contract`'s business; reading
the file for people is :mod:`sim.alarm_center.reading`'s.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from atm_common.clock import Clock, SystemClock
from sim.alarm_center.contract import Alarm, Evidence, Update, validate_update
from sim.alarm_center.reading import conflict_rows, rows

Outcome = Literal["stored", "duplicate", "conflict"]
T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alarms (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alarm_id TEXT NOT NULL UNIQUE,
        received_at TEXT NOT NULL,
        digest TEXT NOT NULL,           -- of the whole alarm, to tell a repeat from a clash
        record TEXT NOT NULL            -- the alarm as JSON, evidence excluded
    )""",
    """CREATE TABLE IF NOT EXISTS evidence (
        alarm_id TEXT NOT NULL REFERENCES alarms(alarm_id),
        idx INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (alarm_id, idx)
    )""",
    """CREATE TABLE IF NOT EXISTS updates (
        update_id TEXT PRIMARY KEY,     -- idempotency key of the follow-up
        alarm_id TEXT NOT NULL REFERENCES alarms(alarm_id),
        time TEXT NOT NULL,
        amount_requested INTEGER NOT NULL,
        digest TEXT                     -- NULL in stores older than conflict detection
    )""",
    """CREATE TABLE IF NOT EXISTS conflicts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('alarm', 'update')),
        alarm_id TEXT NOT NULL,
        update_id TEXT,
        received_at TEXT NOT NULL,
        stored_digest TEXT NOT NULL,    -- of the copy kept
        digest TEXT NOT NULL,           -- of the copy refused
        record TEXT NOT NULL            -- the refused copy as JSON, evidence summarised
    )""",
)


def _evidence_rows(alarm_id: str, first: int, items: tuple[Evidence, ...]) -> list[Any]:
    return [
        (alarm_id, first + i, e.content_type, hashlib.sha256(e.data).hexdigest(), e.data)
        for i, e in enumerate(items)
    ]


def _summary(items: tuple[Evidence, ...]) -> list[dict[str, Any]]:
    return [
        {
            "content_type": e.content_type,
            "bytes": len(e.data),
            "sha256": hashlib.sha256(e.data).hexdigest(),
        }
        for e in items
    ]


class AlarmStore:
    """The read-write store the server owns; thread-safe (one connection, one lock)."""

    def __init__(self, path: str | Path, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        for statement in SCHEMA:
            self._conn.execute(statement)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(updates)")}
        if "digest" not in columns:
            self._conn.execute("ALTER TABLE updates ADD COLUMN digest TEXT")

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work()`` in one IMMEDIATE transaction under the lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _conflict(
        self,
        kind: str,
        alarm_id: str,
        update_id: str | None,
        kept: str,
        digest: str,
        record: dict[str, Any],
    ) -> Outcome:
        self._conn.execute(
            "INSERT INTO conflicts (kind, alarm_id, update_id, received_at, stored_digest,"
            " digest, record) VALUES (?,?,?,?,?,?,?)",
            (
                kind,
                alarm_id,
                update_id,
                self.clock.now().isoformat(),
                kept,
                digest,
                json.dumps(record, sort_keys=True),
            ),
        )
        return "conflict"

    def add(self, alarm: Alarm) -> Outcome:
        """Store ``alarm`` once: stored, an identical duplicate, or a recorded conflict."""
        digest = alarm.digest()

        def work() -> Outcome:
            row = self._conn.execute(
                "SELECT digest FROM alarms WHERE alarm_id = ?", (alarm.alarm_id,)
            ).fetchone()
            if row is not None:
                if row[0] == digest:
                    return "duplicate"
                refused = {**alarm.record, "evidence": _summary(alarm.evidence)}
                return self._conflict("alarm", alarm.alarm_id, None, row[0], digest, refused)
            self._conn.execute(
                "INSERT INTO alarms (alarm_id, received_at, digest, record) VALUES (?,?,?,?)",
                (
                    alarm.alarm_id,
                    self.clock.now().isoformat(),
                    digest,
                    json.dumps(alarm.record, sort_keys=True),
                ),
            )
            self._conn.executemany(
                "INSERT INTO evidence (alarm_id, idx, content_type, sha256, data)"
                " VALUES (?,?,?,?,?)",
                _evidence_rows(alarm.alarm_id, 0, alarm.evidence),
            )
            return "stored"

        return self._write(work)

    def add_update(self, alarm_id: str, body: object) -> Outcome | None:
        """A follow-up of a stored alarm: the amount asked later in the same session,
        and/or evidence (camera snapshots the terminal sent after the alarm went out).

        Returns the outcome, or None when the alarm is unknown.
        """
        update: Update = validate_update(body)
        digest = update.digest()

        def work() -> Outcome | None:
            known = self._conn.execute("SELECT 1 FROM alarms WHERE alarm_id = ?", (alarm_id,))
            if known.fetchone() is None:
                return None
            row = self._conn.execute(
                "SELECT alarm_id, digest FROM updates WHERE update_id = ?", (update.update_id,)
            ).fetchone()
            if row is not None:
                if row[0] == alarm_id and row[1] in (None, digest):
                    return "duplicate"
                refused = {
                    "update_id": update.update_id,
                    "time": update.time,
                    "amount_requested": update.amount_requested,
                    "evidence": _summary(update.evidence),
                }
                kept = str(row[1] or "")
                return self._conflict("update", alarm_id, update.update_id, kept, digest, refused)
            self._conn.execute(
                "INSERT INTO updates (update_id, alarm_id, time, amount_requested, digest)"
                " VALUES (?,?,?,?,?)",
                (update.update_id, alarm_id, update.time, update.amount_requested, digest),
            )
            (first,) = self._conn.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM evidence WHERE alarm_id = ?", (alarm_id,)
            ).fetchone()
            self._conn.executemany(
                "INSERT INTO evidence (alarm_id, idx, content_type, sha256, data)"
                " VALUES (?,?,?,?,?)",
                _evidence_rows(alarm_id, first, update.evidence),
            )
            return "stored"

        return self._write(work)

    def alarms(self) -> list[dict[str, Any]]:
        """Every alarm in arrival order, evidence summarised (type, size, hash)."""
        with self._lock:
            return rows(self._conn)

    def conflicts(self) -> list[dict[str, Any]]:
        """Every conflicting copy refused, in arrival order."""
        with self._lock:
            return conflict_rows(self._conn)

    def get(self, alarm_id: str) -> dict[str, Any] | None:
        """One alarm with its evidence bytes as base64, or None."""
        with self._lock:
            found = rows(self._conn, alarm_id)
            if not found:
                return None
            data = self._conn.execute(
                "SELECT data FROM evidence WHERE alarm_id = ? ORDER BY idx", (alarm_id,)
            ).fetchall()
        alarm = found[0]
        for item, (blob,) in zip(alarm["evidence"], data, strict=True):
            item["data_base64"] = base64.b64encode(blob).decode("ascii")
        return alarm

    def close(self) -> None:
        with self._lock:
            self._conn.close()
