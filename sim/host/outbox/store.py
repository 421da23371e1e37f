"""The outbox's durable queue: one SQLite table, its rules of entry and its retry schedule.

This is the half of the outbox that runs inside the host's authorisations, so it does no
I/O beyond the caller's own connection: :func:`enqueue` writes into the caller's open
transaction (an alarm commits or rolls back with the authorisation that raised it) and
refuses what must never leave the bank (card or PIN data, an alarm without its
idempotency key). The worker that empties the queue (:mod:`sim.host.outbox.worker`)
and the peers it delivers to live apart, so raising an alarm never imports a socket.

:class:`Backoff` is here, beside the ``next_attempt`` column it fills: how long an entry
waits after its n-th failed attempt is a property of the queue, not of any one peer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError

log = logging.getLogger(__name__)

KINDS = ("alarm", "sms", "bill", "binding")
FORBIDDEN_KEYS = frozenset({"pan", "pin", "pin_block", "track2", "cvv"})

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('alarm', 'sms', 'bill', 'binding')),
        destination TEXT NOT NULL,      -- the ordering key: one queue per destination
        payload TEXT NOT NULL,          -- JSON; rewritten once by a prepare hook
        created TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,  -- wall-clock epoch seconds
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        last_error TEXT,
        delivered_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, destination, id)",
)

Payload = dict[str, Any]


class OutboxError(AtmError):
    """The outbox refused an entry, or was used against its rules."""


class RetryableDeliveryError(OutboxError):
    """The peer could not take it now (down, 5xx, timeout): try again later."""


class PermanentDeliveryError(OutboxError):
    """The peer will never accept this payload: the entry is marked ``failed``."""


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    destination: str
    payload: Payload
    created: str
    attempts: int
    next_attempt: float
    status: str
    last_error: str | None
    delivered_at: str | None


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential retry delays: ``base``, 2*``base``, 4*``base`` ... capped at ``cap``."""

    base: float = 1.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("need 0 < base_delay <= max_delay")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure."""
        return float(min(self.cap, self.base * 2 ** max(0, attempts - 1)))


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table (statement by statement: no implicit COMMIT, unlike executescript)."""
    for statement in SCHEMA:
        conn.execute(statement)


def _forbidden(value: object, path: str = "") -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in FORBIDDEN_KEYS:
                return where
            if (found := _forbidden(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _forbidden(item, f"{path}[{i}]")) is not None:
                return found
    return None


def enqueue(
    conn: sqlite3.Connection,
    kind: str,
    payload: Mapping[str, Any],
    destination: str,
    *,
    clock: Clock | None = None,
) -> int:
    """Queue ``payload`` for ``destination``; returns the entry id.

    Does not begin or commit: inside the caller's ``BEGIN .. COMMIT`` the entry shares
    its fate; outside one it commits on its own (autocommit connection).
    """
    if kind not in KINDS:
        raise OutboxError(f"unknown outbox kind {kind!r}; one of {', '.join(KINDS)}")
    if not destination:
        raise OutboxError("an outbox entry needs a destination")
    if (bad := _forbidden(payload)) is not None:
        raise OutboxError(f"refusing to queue card or PIN data (key {bad})")
    if kind == "alarm" and not payload.get("alarm_id"):
        raise OutboxError("an alarm needs an alarm_id: the alarm center's idempotency key")
    try:
        text = json.dumps(dict(payload), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"payload is not JSON: {exc}") from None
    (entry_id,) = conn.execute(
        "INSERT INTO outbox (kind, destination, payload, created) VALUES (?,?,?,?) RETURNING id",
        (kind, destination, text, (clock or SystemClock()).now().isoformat()),
    ).fetchone()
    log.info("outbox: queued %s #%d for %s", kind, entry_id, destination)
    return int(entry_id)


def entries(conn: sqlite3.Connection, status: str | None = None) -> list[OutboxEntry]:
    """Every entry (or those with ``status``) in id order, for reports and tests."""
    query, args = "SELECT * FROM outbox", tuple[str, ...]()
    if status is not None:
        query, args = query + " WHERE status = ?", (status,)
    rows = conn.execute(query + " ORDER BY id", args).fetchall()
    return [
        OutboxEntry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
        for r in rows
    ]
