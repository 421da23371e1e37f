"""The outbox's delivery loop: due entries out, in order, each outcome made durable.

:class:`OutboxWorker` is the one writer of delivery state. It is kept apart from the
queue (:mod:`sim.host.outbox.store`) because it runs in the host's event loop, long after
and outside the transactions that filled the queue, and apart from the peers
(:mod:`sim.host.outbox.alarm_delivery`) because it knows none of them: it is given one
deliverer per kind (and optionally a preparer that completes a payload once) and only
tells their errors apart: :class:`PermanentDeliveryError` marks an entry ``failed``,
anything else schedules a retry with the queue's :class:`Backoff`.

Each destination drains in id order and stops at its first failure; destinations drain
concurrently, so a dead alarm center never holds back an SMS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from atm_common.clock import Clock
from sim.host import storage
from sim.host.outbox.store import (
    Backoff,
    OutboxError,
    Payload,
    PermanentDeliveryError,
    RetryableDeliveryError,
    ensure_schema,
)

log = logging.getLogger(__name__)

Deliverer = Callable[[Payload], Awaitable[None]]
Preparer = Callable[[Payload], Awaitable[Payload]]


@dataclasses.dataclass
class DrainResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    next_due: float | None = None  # epoch of the earliest entry still waiting, if any


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
        self.backoff = Backoff(base_delay, max_delay)
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
            self._conn = storage.connect_raw(db)
        ensure_schema(self._conn)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def delay(self, attempts: int) -> float:
        """Backoff after the ``attempts``-th failure: base, 2*base, 4*base ... max."""
        return self.backoff.delay(attempts)

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
