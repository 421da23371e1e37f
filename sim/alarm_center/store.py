"""The alarm center's durable store: validated alarms on disk, and reading them back.

An alarm acknowledged is an alarm on disk: SQLite in WAL mode with ``synchronous=FULL``,
each alarm (or follow-up) in one ``BEGIN IMMEDIATE`` transaction. Evidence (camera
frames) lives in its own table so listings stay small. ``alarm_id`` is the idempotency
key: a repeat is stored once (first copy wins) and reported as identical or not, and an
update's ``update_id`` likewise.

What an alarm must look like is :mod:`sim.alarm_center.contract`'s business; this module
only stores what the contract let through. It also holds the read side for people:
:func:`list_alarms` reads the file of a running center without writing to it, and
:func:`format_alarms` makes the lines ``atm alarm-center list`` prints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.money import format_minor
from sim.alarm_center.contract import Alarm, AlarmError, validate_update

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
        amount_requested INTEGER NOT NULL
    )""",
)


class AlarmStoreError(AlarmError):
    """The store file is missing or unreadable."""


def _rows(conn: sqlite3.Connection, alarm_id: str | None = None) -> list[dict[str, Any]]:
    where, args = ("WHERE alarm_id = ?", (alarm_id,)) if alarm_id is not None else ("", ())
    alarms = []
    for seq, aid, received, record in conn.execute(
        f"SELECT seq, alarm_id, received_at, record FROM alarms {where} ORDER BY seq", args
    ):
        alarm = {"seq": seq, "received_at": received, **json.loads(record)}
        alarm["evidence"] = [
            {"content_type": ct, "bytes": n, "sha256": sha}
            for ct, n, sha in conn.execute(
                "SELECT content_type, length(data), sha256 FROM evidence"
                " WHERE alarm_id = ? ORDER BY idx",
                (aid,),
            )
        ]
        alarm["updates"] = [
            {"update_id": uid, "time": t, "amount_requested": amount}
            for uid, t, amount in conn.execute(
                "SELECT update_id, time, amount_requested FROM updates WHERE alarm_id = ?"
                " ORDER BY rowid",
                (aid,),
            )
        ]
        alarms.append(alarm)
    return alarms


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

    def add(self, alarm: Alarm) -> tuple[bool, bool]:
        """Store ``alarm`` once; returns (new, same_as_stored) so a clash can be reported."""
        digest = alarm.digest()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT digest FROM alarms WHERE alarm_id = ?", (alarm.alarm_id,)
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO alarms (alarm_id, received_at, digest, record)"
                        " VALUES (?,?,?,?)",
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
                        [
                            (
                                alarm.alarm_id,
                                i,
                                e.content_type,
                                hashlib.sha256(e.data).hexdigest(),
                                e.data,
                            )
                            for i, e in enumerate(alarm.evidence)
                        ],
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return row is None, row is None or row[0] == digest

    def add_update(self, alarm_id: str, update: dict[str, Any]) -> bool | None:
        """A follow-up of a stored alarm: the amount asked later in the same session,
        and/or evidence (camera snapshots the terminal sent after the alarm went out).

        Returns True when stored, False for a repeat, None when the alarm is unknown.
        """
        amount, evidence = validate_update(update)
        with self._lock:
            if (
                self._conn.execute(
                    "SELECT 1 FROM alarms WHERE alarm_id = ?", (alarm_id,)
                ).fetchone()
                is None
            ):
                return None
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO updates (update_id, alarm_id, time, amount_requested)"
                    " VALUES (?,?,?,?)",
                    (update["update_id"], alarm_id, update["time"], amount),
                )
                if cursor.rowcount == 1 and evidence:
                    (first,) = self._conn.execute(
                        "SELECT COALESCE(MAX(idx) + 1, 0) FROM evidence WHERE alarm_id = ?",
                        (alarm_id,),
                    ).fetchone()
                    self._conn.executemany(
                        "INSERT INTO evidence (alarm_id, idx, content_type, sha256, data)"
                        " VALUES (?,?,?,?,?)",
                        [
                            (
                                alarm_id,
                                first + i,
                                e.content_type,
                                hashlib.sha256(e.data).hexdigest(),
                                e.data,
                            )
                            for i, e in enumerate(evidence)
                        ],
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return cursor.rowcount == 1

    def alarms(self) -> list[dict[str, Any]]:
        """Every alarm in arrival order, evidence summarised (type, size, hash)."""
        with self._lock:
            return _rows(self._conn)

    def get(self, alarm_id: str) -> dict[str, Any] | None:
        """One alarm with its evidence bytes as base64, or None."""
        with self._lock:
            found = _rows(self._conn, alarm_id)
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


def list_alarms(path: str | Path) -> list[dict[str, Any]]:
    """Read the store of a (possibly running) alarm center without writing to it."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise AlarmStoreError(f"{path}: no alarm store here")
    try:
        conn = sqlite3.connect(f"file:{resolved}?mode=ro", uri=True)
        try:
            return _rows(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AlarmStoreError(f"{path}: cannot read the alarm store: {exc}") from exc


def format_alarms(alarms: list[dict[str, Any]]) -> list[str]:
    """One line per alarm for ``atm alarm-center list`` (the CLI prints them)."""
    lines = []
    for a in alarms:
        loc = a["location"]
        where = (
            f"{loc['lat']:.5f},{loc['lon']:.5f} ({loc['source']})"
            if loc.get("lat") is not None
            else "location unknown"
        )
        lines.append(
            f"{a['time']}  {a['alarm_id']}  terminal {a['terminal_id']} ({a['terminal_ip']})"
            f"  {where}  card {a['masked_pan']}  account {a['account']}"
            f"  requested {format_minor(a['amount_requested'])}  evidence {len(a['evidence'])}"
        )
    return lines
