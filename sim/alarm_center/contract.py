"""The alarm center's contract: what a duress alarm (and a follow-up) must look like.

A duress alarm is the one message in this system where a person's safety depends on it
arriving once, intact and without card data. So the contract is enforced where the
alarm is stored, not only at the HTTP edge: every field is checked and a bad one is named
(``location.lat``, ``evidence[0].data_base64``), a PAN must be masked (first 6 / last 4
at most), unknown keys are refused so a sender's typo cannot slip card data in under a new
name, and ``alarm_id`` is an idempotency key: the bank's outbox retries until it hears an
answer, so a repeat is acknowledged and stored once (first copy wins).

This module is pure (no file, no socket): it turns decoded JSON into an :class:`Alarm`
or raises :class:`AlarmValidationError`. Keeping it apart from the SQLite store
(:mod:`sim.alarm_center.store`) lets the contract be read, and tested, on its own.
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
from typing import Any

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
LOCATION_OPTIONAL = ("accuracy_m", "cell_id", "site", "reported", "distance_m")
# register: the bank's own record of a fixed terminal's site, which wins over what the
# terminal reports (then in ``reported``, with ``distance_m`` between them)
LOCATION_SOURCES = ("register", "gps", "site", "carrier", "none")
REPORTED_SOURCES = ("gps", "site")
MAX_TEXT = 128
MAX_EVIDENCE = 16
_FULL_PAN = re.compile(r"\d{13,19}")
_MASKED_PAN = re.compile(r"\d{0,6}[*Xx]+\d{0,4}")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+")


class AlarmError(AtmError):
    """Root of the alarm center's deliberate errors."""


class AlarmValidationError(AlarmError):
    """An alarm broke the contract; ``field`` is the dotted path of the bad field."""

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


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
        """What tells an identical repeat from a conflicting one."""
        return _digest(self.record, self.evidence)


@dataclasses.dataclass(frozen=True)
class Update:
    """A validated follow-up of an alarm; ``update_id`` is its idempotency key."""

    update_id: str
    time: str
    amount_requested: int
    evidence: tuple[Evidence, ...] = ()

    def digest(self) -> str:
        record = {"update_id": self.update_id, "time": self.time, "amount": self.amount_requested}
        return _digest(record, self.evidence)


def _digest(record: dict[str, Any], evidence: tuple[Evidence, ...]) -> str:
    h = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    for item in evidence:
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
    if "site" in obj:
        out["site"] = _text(obj, "site", "location.site")
    if "reported" in obj:
        out["reported"] = _reported(obj["reported"])
    if "distance_m" in obj:
        out["distance_m"] = _number(obj["distance_m"], "location.distance_m", 0, 4.1e7)
    return out


def _reported(obj: object) -> dict[str, Any]:
    """What the terminal said when the register placed the alarm: gps or site, located."""
    _keys(obj, "location.reported", ("lat", "lon", "source", "age"), ())
    assert isinstance(obj, dict)
    if obj["source"] not in REPORTED_SOURCES:
        raise AlarmValidationError(
            "location.reported.source", f"must be one of {', '.join(REPORTED_SOURCES)}"
        )
    out: dict[str, Any] = {"source": obj["source"]}
    for key, bound in (("lat", 90.0), ("lon", 180.0)):
        out[key] = _number(obj[key], f"location.reported.{key}", -bound, bound)
    age = obj["age"]
    out["age"] = None if age is None else _number(age, "location.reported.age", 0, math.inf)
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


def validate_update(update: object) -> Update:
    """Check a follow-up of an alarm: ``update_id`` and ``time`` are required, the amount
    requested later in the session (0 when absent) and evidence are optional."""
    _keys(update, "", ("update_id", "time"), ("amount_requested", "evidence"))
    assert isinstance(update, dict)
    update_id = _text(update, "update_id", "update_id")
    when = _text(update, "time", "time")
    amount = update.get("amount_requested", 0)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise AlarmValidationError("amount_requested", "must be a non-negative integer")
    evidence = _evidence(update["evidence"]) if "evidence" in update else ()
    return Update(update_id, when, amount, evidence)
