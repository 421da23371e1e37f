"""The host's durable outbox: alarms, SMS and bills that must reach the outside world.

Why an outbox and not a direct call: a duress alarm is raised while the host authorises
a withdrawal. Posting it to the alarm center from inside that authorisation would either
hold the terminal hostage to a slow peer or lose the alarm when the peer is down. So
:func:`enqueue` writes the message into the host database *inside the caller's SQLite
transaction* (the alarm commits or rolls back with the authorisation that raised it) and
:class:`OutboxWorker` delivers it later, from the same file, after any crash.

Delivery rules: entries for one destination go out in id order (a later message never
overtakes an earlier one); a failure stops that destination only and schedules a retry
with exponential backoff on the injected clock. Nothing is ever dropped: an entry stays
``pending`` and is retried forever with its attempts counted. ``failed`` is reserved for
a payload the peer says it will never accept (:class:`PermanentDeliveryError`, e.g. a 400
from the alarm center), and is logged at ERROR for a person to look at. Receivers must be
idempotent (the alarm center is, by ``alarm_id``), because a delivery whose answer was
lost is delivered again.

The HTTP clients (:class:`AlarmDeliverer`, :class:`CarrierLocator`) use urllib in a
worker thread so the host's event loop never blocks on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import logging
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError

log = logging.getLogger(__name__)

KINDS = ("alarm", "sms", "bill")
FORBIDDEN_KEYS = frozenset({"pan", "pin", "pin_block", "track2", "cvv"})
PERMANENT_HTTP = frozenset({400, 413, 422})  # the payload itself is refused
MAX_RESPONSE = 64 * 1024

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('alarm', 'sms', 'bill')),
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
Deliverer = Callable[[Payload], Awaitable[None]]
Preparer = Callable[[Payload], Awaitable[Payload]]


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


@dataclasses.dataclass
class DrainResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    next_due: float | None = None  # epoch of the earliest entry still waiting, if any


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
    cursor = conn.execute(
        "INSERT INTO outbox (kind, destination, payload, created) VALUES (?,?,?,?)",
        (kind, destination, text, (clock or SystemClock()).now().isoformat()),
    )
    assert cursor.lastrowid is not None
    log.info("outbox: queued %s #%d for %s", kind, cursor.lastrowid, destination)
    return cursor.lastrowid


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


class OutboxWorker:
    """Delivers due entries; give it a path (its own connection) or the host's connection."""

    def __init__(
        self,
        db: str | Path | sqlite3.Connection,
        clock: Clock,
        deliverers: Mapping[str, Deliverer],
        *,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        preparers: Mapping[str, Preparer] | None = None,
        poll_interval: float = 1.0,
        kinds: Collection[str] | None = None,
    ) -> None:
        """``kinds``: deliver only these (None: all); others stay pending, untouched."""
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self.clock = clock
        self.deliverers = dict(deliverers)
        self.preparers = dict(preparers or {})
        self.base_delay, self.max_delay = base_delay, max_delay
        self.poll_interval = poll_interval
        self.kinds = tuple(kinds) if kinds is not None else None
        self._owns_conn = not isinstance(db, sqlite3.Connection)
        if isinstance(db, sqlite3.Connection):
            self._conn = db
        else:
            self._conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        ensure_schema(self._conn)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def delay(self, attempts: int) -> float:
        """Backoff after the ``attempts``-th failure: base, 2*base, 4*base ... max."""
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1)))

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call after enqueue's COMMIT)."""
        self._wake.set()

    async def drain_once(self) -> DrainResult:
        """One pass: every destination's due entries in order, destinations concurrently."""
        async with self._lock:
            now = self.clock.now().timestamp()
            queues: dict[str, list[sqlite3.Row | tuple[Any, ...]]] = {}
            query, args = (
                "SELECT id, kind, destination, payload, attempts, next_attempt FROM outbox"
                " WHERE status = 'pending'",
                tuple[str, ...](),
            )
            if self.kinds is not None:
                query += f" AND kind IN ({','.join('?' * len(self.kinds))})"
                args = self.kinds
            for row in self._conn.execute(query + " ORDER BY id", args):
                queues.setdefault(row[2], []).append(row)
            result = DrainResult()
            dues = await asyncio.gather(
                *(self._drain_queue(rows, now, result) for rows in queues.values())
            )
            waiting = [due for due in dues if due is not None]
            result.next_due = min(waiting) if waiting else None
            return result

    async def _drain_queue(
        self, rows: list[sqlite3.Row | tuple[Any, ...]], now: float, result: DrainResult
    ) -> float | None:
        """Deliver in order until an entry must wait; returns when the head is next due."""
        for entry_id, kind, destination, text, attempts, next_attempt in rows:
            if next_attempt > now:
                return float(next_attempt)
            retry_at = await self._attempt(entry_id, kind, destination, text, attempts + 1, result)
            if retry_at is not None:
                return retry_at
        return None

    async def _attempt(
        self,
        entry_id: int,
        kind: str,
        destination: str,
        text: str,
        attempts: int,
        result: DrainResult,
    ) -> float | None:
        """Try one entry; returns the retry time if it must wait, None if settled."""
        what = f"{kind} #{entry_id} to {destination}"
        try:
            payload = json.loads(text)
            deliverer = self.deliverers.get(kind)
            if deliverer is None:
                raise RetryableDeliveryError(f"no deliverer configured for {kind!r}")
            preparer = self.preparers.get(kind)
            if preparer is not None:
                prepared = await preparer(payload)
                if prepared != payload:
                    # Kept, so every later attempt sends the very same message.
                    self._write(
                        "UPDATE outbox SET payload = ? WHERE id = ?",
                        (json.dumps(prepared, sort_keys=True, allow_nan=False), entry_id),
                    )
                    payload = prepared
            await deliverer(payload)
        except (PermanentDeliveryError, json.JSONDecodeError) as exc:
            self._write(
                "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? WHERE id = ?",
                (attempts, str(exc), entry_id),
            )
            log.error(
                "OUTBOX: %s FAILED PERMANENTLY after %d attempts, needs a person: %s",
                what,
                attempts,
                exc,
            )
            result.failed += 1
            return None
        except Exception as exc:  # any other failure is retried and logged, never lost
            retry_at = self.clock.now().timestamp() + self.delay(attempts)
            self._write(
                "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                (attempts, retry_at, f"{type(exc).__name__}: {exc}", entry_id),
            )
            if isinstance(exc, RetryableDeliveryError):
                log.warning(
                    "outbox: %s attempt %d failed, retry in %.0fs: %s",
                    what,
                    attempts,
                    self.delay(attempts),
                    exc,
                )
            else:
                log.exception(
                    "outbox: %s attempt %d raised unexpectedly; will retry", what, attempts
                )
            result.retried += 1
            return retry_at
        self._write(
            "UPDATE outbox SET status = 'delivered', attempts = ?, last_error = NULL,"
            " delivered_at = ? WHERE id = ?",
            (attempts, self.clock.now().isoformat(), entry_id),
        )
        log.info("outbox: %s delivered (attempt %d)", what, attempts)
        result.delivered += 1
        return None

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """One durable update in its own transaction (never inside someone else's)."""
        if self._conn.in_transaction:
            raise OutboxError("a transaction is open on the outbox connection across an await")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(sql, args)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    async def run(self, stop: asyncio.Event) -> None:
        """Drain, then sleep until the next entry is due, a wake() or the next poll."""
        log.info("outbox worker started")
        while not stop.is_set():
            self._wake.clear()
            try:
                result = await self.drain_once()
            except sqlite3.Error as exc:
                log.error("outbox: database error, trying again shortly: %s", exc)
                result = DrainResult()
            idle = self.poll_interval
            if result.next_due is not None:
                idle = min(idle, max(0.0, result.next_due - self.clock.now().timestamp()))
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
        log.info("outbox worker stopped")

    def close(self) -> None:
        """Close the connection if the worker opened it."""
        if self._owns_conn:
            self._conn.close()


def _http(url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    """(status, body) of one request; no proxies (these peers are on the bank's network)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(MAX_RESPONSE)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(MAX_RESPONSE)
    except urllib.error.URLError as exc:
        raise RetryableDeliveryError(f"{url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc


def _error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        return str(decoded.get("error", decoded)) if isinstance(decoded, dict) else str(decoded)
    except ValueError:
        return body[:200].decode("utf-8", "replace")


class AlarmDeliverer:
    """POSTs an alarm to ``base_url + '/alarms'``; 400/413/422 are permanent, the rest
    (refused, timeout, 5xx, a misrouted 404) retryable."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/alarms"
        self.timeout = timeout

    async def __call__(self, payload: Payload) -> None:
        url = self.url
        if payload.get("update"):  # a follow-up to an alarm already sent (same destination,
            # so the outbox's per-destination order delivers it after the alarm itself)
            url = f"{self.url}/{urllib.parse.quote(str(payload['alarm_id']))}/updates"
            payload = {k: v for k, v in payload.items() if k not in ("update", "alarm_id")}
        body = json.dumps(payload, allow_nan=False).encode()
        status, answer = await asyncio.to_thread(_http, url, body, self.timeout)
        if 200 <= status < 300:
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(answer).get("identical") is False:
                    log.warning(
                        "alarm %s was already stored with other content; the center kept "
                        "its first copy",
                        payload.get("alarm_id"),
                    )
            return
        text = f"alarm center answered {status}: {_error_text(answer)}"
        if status in PERMANENT_HTTP:
            raise PermanentDeliveryError(text)
        if 400 <= status < 500:
            log.error("outbox: %s (check the alarm center URL %s)", text, self.url)
        raise RetryableDeliveryError(text)


class CarrierLocator:
    """Asks the carrier where a terminal is; ``fill_location`` is the alarm prepare hook."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def locate(self, terminal_id: str) -> dict[str, Any] | None:
        """The carrier's answer, or None when it does not know the terminal (400/404)."""
        url = f"{self.base_url}/locate?" + urllib.parse.urlencode({"terminal_id": terminal_id})
        status, answer = await asyncio.to_thread(_http, url, None, self.timeout)
        if status in (400, 404):
            log.error("carrier cannot locate terminal %s: %s", terminal_id, _error_text(answer))
            return None
        if status != 200:
            raise RetryableDeliveryError(f"carrier answered {status}: {_error_text(answer)}")
        try:
            found = json.loads(answer)
            return {
                "lat": float(found["lat"]),
                "lon": float(found["lon"]),
                "accuracy_m": float(found["accuracy_m"]),
                "cell_id": str(found["cell_id"]),
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableDeliveryError(f"carrier sent a malformed answer: {exc}") from None

    async def fill_location(self, payload: Payload) -> Payload:
        """An alarm whose terminal had no location gets the carrier's, looked up now.

        An unknown terminal leaves the location ``none``: the alarm goes out regardless.
        """
        location = payload.get("location")
        if not isinstance(location, dict) or location.get("source") != "none":
            return payload
        found = await self.locate(str(payload.get("terminal_id", "")))
        if found is None:
            return payload
        return {**payload, "location": {**found, "source": "carrier", "age": 0}}
