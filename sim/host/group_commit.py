"""Group commit: the requests that arrive together share one transaction and one commit.

A durable commit (an fsync) costs more than everything else a request does, so the host
server hands :class:`GroupCommitter` every request that reaches it in the same turn of
the event loop, and answers them all after a single ``COMMIT``:

* each request runs inside its own ``SAVEPOINT`` (and its handler's own
  :func:`~sim.host.ledger.transaction` nests as one more), so a request that fails rolls
  back alone: the others of the batch commit without it;
* no response leaves before its commit: the futures the connections wait on are
  resolved only after ``COMMIT`` returns; if the commit itself fails nothing of the
  batch is durable, and every request of it is answered 96 (system error), never
  approved;
* requests of one batch see each other's effects in order (same connection, same
  transaction): a repeat of a request in the same batch gets the stored answer.

The batch is bounded (``max_batch``); what is left over goes into the next one, queued
at once behind it. A batch runs synchronously in the event loop (as a single request did
before), so data arriving while it commits forms the next batch by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import Callable

from atm_common.errors import AtmError
from host_link.codec import Message, describe
from sim.host.authoriser import Authoriser
from sim.host.ledger import transaction

log = logging.getLogger(__name__)

MAX_BATCH = 256
_names = itertools.count()

Outcome = Message | None | BaseException


class GroupCommitter:
    """Collects requests for one loop turn, then handles them in one transaction."""

    def __init__(
        self,
        authoriser: Authoriser,
        max_batch: int = MAX_BATCH,
        on_alarm: Callable[[], None] | None = None,
    ) -> None:
        """``on_alarm``: called after a commit that queued a silent alarm (wakes the
        outbox worker, whose own connection sees the alarm only once it is committed)."""
        self.authoriser = authoriser
        self.on_alarm = on_alarm
        self.max_batch = max(1, max_batch)
        self._pending: list[tuple[Message, str, asyncio.Future[Message | None]]] = []
        self._scheduled = False
        self.batches = 0  # counters, for the benchmark's report
        self.requests = 0

    def submit(self, message: Message, peer_ip: str) -> asyncio.Future[Message | None]:
        """The future response to ``message``, resolved after the commit that holds it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message | None] = loop.create_future()
        self._pending.append((message, peer_ip, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after the other connections' reads of this turn
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._scheduled = False
        raised = self.authoriser.alarms.raised
        outcomes = self.handle([(message, ip) for message, ip, _ in batch])
        if self.authoriser.alarms.raised != raised and self.on_alarm is not None:
            self.on_alarm()
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the connection went away meanwhile
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def handle(self, requests: list[tuple[Message, str]]) -> list[Outcome]:
        """Outcomes of ``requests`` (a response, None, or the exception a handler raised),
        all made durable by one commit before this returns."""
        self.batches += 1
        self.requests += len(requests)
        conn = self.authoriser.conn
        outcomes: list[Outcome] = []
        try:
            with transaction(conn):
                outcomes = [self._one(message, ip) for message, ip in requests]
        except (sqlite3.Error, AtmError) as exc:
            # the COMMIT failed (disk full, I/O error, lost server): nothing is durable
            log.error("group commit of %d requests failed, answering 96: %s", len(requests), exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as again:
                    log.error("rollback after a failed commit failed too: %s", again)
            return [self.authoriser.refuse(message, "96") for message, _ in requests]
        return outcomes

    def _one(self, message: Message, peer_ip: str) -> Outcome:
        """One request inside its own savepoint: its failure is undone alone."""
        conn = self.authoriser.conn
        name = f"req{next(_names)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            outcome: Outcome = self.authoriser.handle(message, peer_ip)
        except Exception as exc:  # a bug in a handler: that connection sees it, no other
            log.error("request %s failed: %r", describe(message), exc)
            outcome = exc
        if isinstance(outcome, BaseException) or _failed(conn):
            # PostgreSQL refuses everything after a failed statement until this rollback;
            # on SQLite it undoes what a failing request wrote before it failed
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return outcome


def _failed(conn: sqlite3.Connection) -> bool:
    """True when a statement failed inside the open transaction (PostgreSQL's state)."""
    return bool(getattr(conn, "failed", False))
