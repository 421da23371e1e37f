"""The host outbox with in-process deliverers: atomic enqueue, order, backoff, no loss."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock, SystemClock
from sim.host import db
from sim.host.ledger import transaction
from sim.host.outbox import (
    OutboxError,
    OutboxWorker,
    PermanentDeliveryError,
    RetryableDeliveryError,
    enqueue,
    ensure_schema,
    entries,
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = db.connect(tmp_path / "host.db")
    ensure_schema(c)
    yield c
    c.close()


class Recorder:
    """A deliverer that records what it got and fails on demand."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    async def __call__(self, payload: dict[str, Any]) -> None:
        if self.fail is not None:
            raise self.fail
        self.got.append(payload)


def alarm(n: int) -> dict[str, Any]:
    return {"alarm_id": f"A{n}", "n": n}


def test_enqueue_shares_the_callers_transaction(conn: sqlite3.Connection) -> None:
    with pytest.raises(RuntimeError), transaction(conn):
        enqueue(conn, "alarm", alarm(1), "alarm-center")
        raise RuntimeError("the authorisation failed")
    assert entries(conn) == []
    with transaction(conn):
        entry_id = enqueue(conn, "alarm", alarm(2), "alarm-center", clock=ManualClock())
    [entry] = entries(conn)
    assert (entry.id, entry.kind, entry.payload, entry.status) == (
        entry_id,
        "alarm",
        alarm(2),
        "pending",
    )
    assert (entry.attempts, entry.next_attempt, entry.created) == (
        0,
        0,
        "2026-01-01T12:00:00+00:00",
    )


def test_ensure_schema_does_not_commit_an_open_transaction(tmp_path: Path) -> None:
    c = db.connect(tmp_path / "h.db")
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO persons (id, name) VALUES ('p', 'P')")
    ensure_schema(c)
    c.execute("ROLLBACK")
    assert c.execute("SELECT COUNT(*) FROM persons").fetchone()[0] == 0
    c.close()


@pytest.mark.parametrize(
    ("kind", "payload", "match"),
    [
        ("fax", {"x": 1}, "unknown outbox kind"),
        ("alarm", {"n": 1}, "alarm_id"),
        ("sms", {"to": "+1", "card": {"pan": "4761739001010010"}}, r"card\.pan"),
        ("sms", {"pin_block": "00"}, "pin_block"),
        ("bill", {"when": object()}, "not JSON"),
        ("bill", {"amount": float("nan")}, "not JSON"),
    ],
)
def test_enqueue_refuses(
    conn: sqlite3.Connection, kind: str, payload: dict[str, Any], match: str
) -> None:
    with pytest.raises(OutboxError, match=match):
        enqueue(conn, kind, payload, "somewhere")
    assert entries(conn) == []


def test_delivers_in_order_and_only_once(conn: sqlite3.Connection) -> None:
    clock, sink = ManualClock(), Recorder()
    for n in range(5):
        enqueue(conn, "alarm", alarm(n), "alarm-center")
    worker = OutboxWorker(conn, clock, {"alarm": sink})
    result = asyncio.run(worker.drain_once())
    assert (result.delivered, result.retried, result.failed, result.next_due) == (5, 0, 0, None)
    assert sink.got == [alarm(n) for n in range(5)]
    assert asyncio.run(worker.drain_once()).delivered == 0
    assert all(e.status == "delivered" and e.attempts == 1 for e in entries(conn))
    assert entries(conn)[0].delivered_at == clock.now().isoformat()


def test_backoff_doubles_up_to_the_cap_and_nothing_is_dropped(conn: sqlite3.Connection) -> None:
    clock, sink = ManualClock(), Recorder()
    enqueue(conn, "alarm", alarm(1), "alarm-center")
    enqueue(conn, "alarm", alarm(2), "alarm-center")
    worker = OutboxWorker(conn, clock, {"alarm": sink}, base_delay=2, max_delay=10)
    sink.fail = RetryableDeliveryError("connection refused")
    start = clock.now().timestamp()
    waited = []
    for attempt in range(1, 7):
        result = asyncio.run(worker.drain_once())
        assert result.retried == 1  # only the head: the second never overtakes it
        head, second = entries(conn)
        assert (head.status, head.attempts, second.attempts) == ("pending", attempt, 0)
        assert "connection refused" in (head.last_error or "")
        waited.append(head.next_attempt - clock.now().timestamp())
        assert result.next_due == head.next_attempt
        assert asyncio.run(worker.drain_once()).retried == 0  # not due yet
        clock.advance(waited[-1])
    assert waited == [2, 4, 8, 10, 10, 10]
    sink.fail = None
    assert asyncio.run(worker.drain_once()).delivered == 2
    assert sink.got == [alarm(1), alarm(2)]
    assert [e.attempts for e in entries(conn)] == [7, 1]
    assert clock.now().timestamp() - start == sum(waited)


def test_one_destination_down_does_not_hold_up_another(conn: sqlite3.Connection) -> None:
    clock, sms, bills = ManualClock(), Recorder(), Recorder()
    enqueue(conn, "sms", {"to": "+1", "n": 1}, "sms:+1")
    enqueue(conn, "bill", {"n": 2}, "billing")
    enqueue(conn, "sms", {"to": "+1", "n": 3}, "sms:+1")
    enqueue(conn, "bill", {"n": 4}, "billing")
    sms.fail = RetryableDeliveryError("gateway down")
    worker = OutboxWorker(conn, clock, {"sms": sms, "bill": bills})
    result = asyncio.run(worker.drain_once())
    assert (result.delivered, result.retried) == (2, 1)
    assert [p["n"] for p in bills.got] == [2, 4]
    assert [e.status for e in entries(conn)] == ["pending", "delivered", "pending", "delivered"]


def test_a_permanent_refusal_fails_that_entry_only(
    conn: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()

    async def picky(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            raise PermanentDeliveryError(
                "alarm center answered 400: masked_pan: looks like a full PAN"
            )

    for n in range(3):
        enqueue(conn, "alarm", alarm(n), "alarm-center")
    result = asyncio.run(OutboxWorker(conn, clock, {"alarm": picky}).drain_once())
    assert (result.delivered, result.failed) == (2, 1)
    statuses = [(e.status, e.attempts) for e in entries(conn)]
    assert statuses == [("delivered", 1), ("failed", 1), ("delivered", 1)]
    assert "masked_pan" in (entries(conn)[1].last_error or "")
    assert any(r.levelname == "ERROR" and "PERMANENTLY" in r.getMessage() for r in caplog.records)


def test_a_buggy_deliverer_or_a_missing_one_is_retried_not_lost(conn: sqlite3.Connection) -> None:
    clock, sink = ManualClock(), Recorder()
    enqueue(conn, "alarm", alarm(1), "alarm-center")
    enqueue(conn, "bill", {"n": 2}, "billing")
    sink.fail = KeyError("oops")
    worker = OutboxWorker(conn, clock, {"alarm": sink}, base_delay=1)
    assert asyncio.run(worker.drain_once()).retried == 2
    first, second = entries(conn)
    assert first.status == second.status == "pending"
    assert "KeyError" in (first.last_error or "") and "no deliverer" in (second.last_error or "")
    sink.fail = None
    clock.advance(1)
    assert asyncio.run(worker.drain_once()).delivered == 1
    assert entries(conn)[1].attempts == 2


def test_prepare_runs_at_delivery_and_its_result_is_kept(conn: sqlite3.Connection) -> None:
    clock, sink = ManualClock(), Recorder()
    calls: list[dict[str, Any]] = []

    async def locate(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        if payload.get("location") == "none":
            return {**payload, "location": f"cell-{len(calls)}"}
        return payload

    enqueue(conn, "alarm", {"alarm_id": "A1", "location": "none"}, "alarm-center")
    sink.fail = RetryableDeliveryError("down")
    worker = OutboxWorker(conn, clock, {"alarm": sink}, preparers={"alarm": locate})
    asyncio.run(worker.drain_once())
    assert entries(conn)[0].payload["location"] == "cell-1"  # stored before delivery failed
    sink.fail = None
    clock.advance(60)
    asyncio.run(worker.drain_once())
    assert sink.got == [{"alarm_id": "A1", "location": "cell-1"}]  # the same message again
    assert len(calls) == 2


def test_worker_with_its_own_connection_sees_the_hosts_commits(tmp_path: Path) -> None:
    host = db.connect(tmp_path / "host.db")
    ensure_schema(host)
    sink = Recorder()
    worker = OutboxWorker(tmp_path / "host.db", ManualClock(), {"alarm": sink})
    with transaction(host):
        enqueue(host, "alarm", alarm(1), "alarm-center")
    assert asyncio.run(worker.drain_once()).delivered == 1
    assert entries(host)[0].status == "delivered"
    worker.close()
    host.close()


def test_run_delivers_on_wake_and_stops(conn: sqlite3.Connection) -> None:
    sink = Recorder()

    async def main() -> None:
        worker = OutboxWorker(conn, SystemClock(), {"alarm": sink}, poll_interval=30)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0)
        enqueue(conn, "alarm", alarm(1), "alarm-center")
        worker.wake()
        for _ in range(200):
            if sink.got:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert sink.got == [alarm(1)]


def test_bad_delays_are_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError):
        OutboxWorker(conn, ManualClock(), {}, base_delay=0)
