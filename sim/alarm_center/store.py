"""The alarm center's contract and its durable store.

A duress alarm is the one message in this system where a person's safety depends on it
arriving once, intact and without card data. So the contract is enforced here, where the
alarm is stored, not only at the HTTP edge: every field is checked and a bad one is named
(``location.lat``, ``evidence[0].data_base64``), a PAN must be masked (first 6 / last 4
at most), unknown keys are refused so a sender's typo cannot slip card data in under a new
name, and ``alarm_id`` is an idempotency key: the bank's outbox retries until it hears an
answer, so a repeat is acknowledged and stored once (first copy wins).

Storage is SQLite in WAL mode with ``synchronous=FULL``: an alarm acknowledged is an
alarm on disk. Evidence (camera frames) lives in its own table so listings stay small.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import math
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError

REQUIRED = (
    "alarm_id",
    "time",
    "terminal_id",
    "terminal_ip",
    "location",
    "masked_pan",
    "account",
    "amount_requested",
)
OPTIONAL = ("evidence",)
LOCATION_REQUIRED = ("lat", "lon", "source", "age")
LOCATION_OPTIONAL = ("accuracy_m", "cell_id")
LOCATION_SOURCES = ("gps", "site", "carrier", "none")
MAX_TEXT = 128
MAX_EVIDENCE = 16
_FULL_PAN = re.compile(r"\d{13,19}")
_MASKED_PAN = re.compile(r"\d{0,6}[*Xx]+\d{0,4}")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+")

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


class AlarmError(AtmError):
    """Root of the alarm center's deliberate errors."""


class AlarmValidationError(AlarmError):
    """An alarm broke the contract; ``field`` is the dotted path of the bad field."""

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class AlarmStoreError(AlarmError):
    """The store file is missing or unreadable."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    content_type: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Alarm:
    """A validated alarm. ``record`` is everything but the evidence bytes."""

    alarm_id: str
    record: dict[str, Any]
    evidence: tuple[Evidence, ...] = ()

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(self.record, sort_keys=True).encode())
        for item in self.evidence:
            h.update(item.content_type.encode() + b"\0" + hashlib.sha256(item.data).digest())
        return h.hexdigest()


def _text(obj: dict[str, Any], key: str, path: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise AlarmValidationError(path, "must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise AlarmValidationError(path, f"longer than {MAX_TEXT} characters")
    return value


def _number(value: object, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlarmValidationError(path, "must be a number")
    if not low <= value <= high:
        raise AlarmValidationError(path, f"must be between {low:g} and {high:g}")
    return float(value)


def _keys(obj: object, path: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise AlarmValidationError(path or None, "must be a JSON object")
    for key in required:
        if key not in obj:
            raise AlarmValidationError(f"{path}.{key}" if path else key, "is required")
    for key in obj:
        if key not in required + optional:
            raise AlarmValidationError(f"{path}.{key}" if path else str(key), "unknown field")


def check_masked_pan(value: object) -> str:
    """A PAN as people may see it: first 6 / last 4 digits at most, the rest masked."""
    if not isinstance(value, str):
        raise AlarmValidationError("masked_pan", "must be a string")
    compact = re.sub(r"[\s-]", "", value)
    if _FULL_PAN.search(compact):
        raise AlarmValidationError("masked_pan", "looks like a full PAN; send it masked")
    if not _MASKED_PAN.fullmatch(compact):
        raise AlarmValidationError(
            "masked_pan", "must be masked, first 6 / last 4 digits at most (401234******0909)"
        )
    return value


def _location(obj: object) -> dict[str, Any]:
    _keys(obj, "location", LOCATION_REQUIRED, LOCATION_OPTIONAL)
    assert isinstance(obj, dict)
    source = obj["source"]
    if source not in LOCATION_SOURCES:
        raise AlarmValidationError(
            "location.source", f"must be one of {', '.join(LOCATION_SOURCES)}"
        )
    out: dict[str, Any] = {"source": source}
    for key, bound in (("lat", 90.0), ("lon", 180.0)):
        if obj[key] is None and source == "none":
            out[key] = None
        else:
            out[key] = _number(obj[key], f"location.{key}", -bound, bound)
    out["age"] = None if obj["age"] is None else _number(obj["age"], "location.age", 0, math.inf)
    if "accuracy_m" in obj:
        out["accuracy_m"] = _number(obj["accuracy_m"], "location.accuracy_m", 0, 1e7)
    if "cell_id" in obj:
        out["cell_id"] = _text(obj, "cell_id", "location.cell_id")
    return out


def _evidence(value: object) -> tuple[Evidence, ...]:
    if not isinstance(value, list):
        raise AlarmValidationError("evidence", "must be a list")
    if len(value) > MAX_EVIDENCE:
        raise AlarmValidationError("evidence", f"at most {MAX_EVIDENCE} items")
    items = []
    for i, item in enumerate(value):
        path = f"evidence[{i}]"
        _keys(item, path, ("content_type", "data_base64"), ())
        content_type = _text(item, "content_type", f"{path}.content_type")
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise AlarmValidationError(f"{path}.content_type", "must look like type/subtype")
        if not isinstance(item["data_base64"], str):
            raise AlarmValidationError(f"{path}.data_base64", "must be a base64 string")
        try:
            data = base64.b64decode(item["data_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise AlarmValidationError(f"{path}.data_base64", "is not valid base64") from None
        items.append(Evidence(content_type, data))
    return tuple(items)


def validate_alarm(obj: object) -> Alarm:
    """Check a decoded JSON alarm against the contract; raises AlarmValidationError."""
    _keys(obj, "", REQUIRED, OPTIONAL)
    assert isinstance(obj, dict)
    record: dict[str, Any] = {k: _text(obj, k, k) for k in ("alarm_id", "terminal_id", "account")}
    when = _text(obj, "time", "time")
    try:
        parsed = dt.datetime.fromisoformat(when)
    except ValueError:
        raise AlarmValidationError("time", "must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise AlarmValidationError("time", "must carry a UTC offset")
    record["time"] = when
    try:
        record["terminal_ip"] = str(ipaddress.ip_address(_text(obj, "terminal_ip", "terminal_ip")))
    except ValueError:
        raise AlarmValidationError("terminal_ip", "must be an IPv4 or IPv6 address") from None
    record["location"] = _location(obj["location"])
    record["masked_pan"] = check_masked_pan(obj["masked_pan"])
    amount = obj["amount_requested"]
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise AlarmValidationError(
            "amount_requested", "must be a non-negative integer (minor units)"
        )
    record["amount_requested"] = amount
    evidence = _evidence(obj["evidence"]) if "evidence" in obj else ()
    return Alarm(record["alarm_id"], record, evidence)


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
        for key in ("update_id", "time"):
            if not isinstance(update.get(key), str) or not update[key]:
                raise AlarmValidationError(key, "must be a non-empty string")
        amount = update.get("amount_requested", 0)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise AlarmValidationError("amount_requested", "must be a non-negative integer")
        evidence = _evidence(update["evidence"]) if "evidence" in update else ()
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
            f"  requested {a['amount_requested'] / 100:.2f}  evidence {len(a['evidence'])}"
        )
    return lines
