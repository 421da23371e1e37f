"""Outbox -> alarm center (and carrier) over real sockets: down, up, refused, slow,
signed, in conflict."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock
from sim.alarm_center import AlarmCenter, list_alarms, list_conflicts
from sim.carrier import CarrierService, CellLocation, default_location
from sim.host import db
from sim.host.ledger import transaction
from sim.host.outbox import (
    AlarmConflictError,
    AlarmDeliverer,
    CarrierLocator,
    OutboxWorker,
    RetryableDeliveryError,
    enqueue,
    ensure_schema,
    entries,
)

from .signed import KEY, call

NO_LOCATION = {"lat": None, "lon": None, "source": "none", "age": None}


def make_alarm(n: int, **changes: Any) -> dict[str, Any]:
    alarm: dict[str, Any] = {
        "alarm_id": f"T0000001-{n:06d}-0101120000",
        "time": "2026-01-01T12:00:00+00:00",
        "terminal_id": "T0000001",
        "terminal_ip": "10.1.2.3",
        "location": {"lat": 52.52, "lon": 13.405, "source": "site", "age": None},
        "masked_pan": "476173******0010",
        "account": "1000000001",
        "amount_requested": 1000 * n,
    }
    alarm.update(changes)
    return alarm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = db.connect(tmp_path / "host.db")
    ensure_schema(c)
    yield c
    c.close()


def drain(worker: OutboxWorker) -> tuple[int, int, int]:
    result = asyncio.run(worker.drain_once())
    return result.delivered, result.retried, result.failed


def test_center_down_then_up_everything_arrives_once_in_order(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    port, clock = free_port(), ManualClock()
    url = f"http://127.0.0.1:{port}"
    for n in range(1, 4):
        with transaction(conn):
            enqueue(conn, "alarm", make_alarm(n), "alarm-center", clock=clock)
    worker = OutboxWorker(
        conn, clock, {"alarm": AlarmDeliverer(url, KEY)}, base_delay=5, max_delay=60
    )
    for attempt, delay in ((1, 5), (2, 10), (3, 20)):
        assert drain(worker) == (0, 1, 0)
        head, *rest = entries(conn)
        assert head.status == "pending" and head.attempts == attempt
        assert head.next_attempt == clock.now().timestamp() + delay
        assert "refused" in (head.last_error or "").lower()
        assert all(e.attempts == 0 and e.status == "pending" for e in rest)
        clock.advance(delay)
    with AlarmCenter(tmp_path / "alarms.db", port=port, host_key=KEY):
        assert drain(worker) == (3, 0, 0)
        assert drain(worker) == (0, 0, 0)
    stored = list_alarms(tmp_path / "alarms.db")
    assert [a["alarm_id"] for a in stored] == [make_alarm(n)["alarm_id"] for n in range(1, 4)]
    assert [e.attempts for e in entries(conn)] == [4, 1, 1]


def test_an_answer_lost_after_storing_is_not_a_second_alarm(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    clock = ManualClock()
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        # The first delivery reached the center but its answer never came back.
        assert call(center.url + "/alarms", make_alarm(1))[0] == 201
        enqueue(conn, "alarm", make_alarm(1), "alarm-center")
        enqueue(conn, "alarm", make_alarm(2), "alarm-center")
        assert drain(OutboxWorker(conn, clock, {"alarm": AlarmDeliverer(center.url, KEY)})) == (
            2,
            0,
            0,
        )
    assert len(list_alarms(tmp_path / "alarms.db")) == 2


def test_a_clashing_repeat_is_flagged_never_delivered(
    conn: sqlite3.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        asyncio.run(AlarmDeliverer(center.url, KEY)(make_alarm(1, amount_requested=5)))
        with pytest.raises(AlarmConflictError, match="409"):
            asyncio.run(AlarmDeliverer(center.url, KEY)(make_alarm(1)))
        enqueue(conn, "alarm", make_alarm(1), "alarm-center")
        enqueue(conn, "alarm", make_alarm(2), "alarm-center")
        worker = OutboxWorker(conn, ManualClock(), {"alarm": AlarmDeliverer(center.url, KEY)})
        assert drain(worker) == (1, 0, 1)  # the alarm behind the conflict still goes out
    clash, after = entries(conn)
    assert clash.status == "failed" and "409" in (clash.last_error or "")
    assert after.status == "delivered"
    first, second = list_alarms(tmp_path / "alarms.db")
    assert first["amount_requested"] == 5 and second["alarm_id"] == make_alarm(2)["alarm_id"]
    assert len(list_conflicts(tmp_path / "alarms.db")) == 2
    assert any("CONFLICT" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_key_the_center_does_not_share_is_retried_not_lost(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    enqueue(conn, "alarm", make_alarm(1), "alarm-center")
    clock = ManualClock()
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        wrong = OutboxWorker(conn, clock, {"alarm": AlarmDeliverer(center.url, bytes(32))})
        assert drain(wrong) == (0, 1, 0)
        [entry] = entries(conn)
        assert entry.status == "pending" and "401" in (entry.last_error or "")
        clock.advance(10)
        assert drain(OutboxWorker(conn, clock, {"alarm": AlarmDeliverer(center.url, KEY)})) == (
            1,
            0,
            0,
        )
    assert len(list_alarms(tmp_path / "alarms.db")) == 1


def test_a_400_fails_the_entry_and_the_next_goes_out(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    clock = ManualClock()
    enqueue(conn, "alarm", make_alarm(1, masked_pan="4761739001010010"), "alarm-center")
    enqueue(conn, "alarm", make_alarm(2), "alarm-center")
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        assert drain(OutboxWorker(conn, clock, {"alarm": AlarmDeliverer(center.url, KEY)})) == (
            1,
            0,
            1,
        )
    bad, good = entries(conn)
    assert bad.status == "failed" and "400" in (bad.last_error or "")
    assert "masked_pan" in (bad.last_error or "") and "full PAN" in (bad.last_error or "")
    assert good.status == "delivered"


class _Status(BaseHTTPRequestHandler):
    status = 503

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [500, 503, 404, 429])
def test_5xx_and_non_payload_4xx_are_retried(conn: sqlite3.Connection, status: int) -> None:
    handler = type("H", (_Status,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        enqueue(conn, "alarm", make_alarm(1), "alarm-center")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert drain(OutboxWorker(conn, ManualClock(), {"alarm": AlarmDeliverer(url, KEY)})) == (
            0,
            1,
            0,
        )
    finally:
        server.shutdown()
        server.server_close()
    [entry] = entries(conn)
    assert entry.status == "pending" and str(status) in (entry.last_error or "")


def test_a_peer_that_never_answers_times_out_and_is_retried(conn: sqlite3.Connection) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        enqueue(conn, "alarm", make_alarm(1), "alarm-center")
        deliverer = AlarmDeliverer(url, KEY, timeout=0.3)
        assert drain(OutboxWorker(conn, ManualClock(), {"alarm": deliverer})) == (0, 1, 0)
    [entry] = entries(conn)
    assert entry.status == "pending" and "timed out" in (entry.last_error or "")


def test_prepare_fills_the_carrier_location_at_delivery(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    clock, carrier_port = ManualClock(), free_port()
    enqueue(conn, "alarm", make_alarm(1, location=NO_LOCATION), "alarm-center")
    enqueue(conn, "alarm", make_alarm(2), "alarm-center")  # has a site location: untouched
    locator = CarrierLocator(f"http://127.0.0.1:{carrier_port}", KEY)
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        worker = OutboxWorker(
            conn,
            clock,
            {"alarm": AlarmDeliverer(center.url, KEY)},
            preparers={"alarm": locator.fill_location},
            base_delay=1,
        )
        assert drain(worker) == (0, 1, 0)  # carrier down: the lookup is retried like delivery
        assert "refused" in (entries(conn)[0].last_error or "").lower()
        clock.advance(1)
        with CarrierService(port=carrier_port, host_key=KEY):
            assert drain(worker) == (2, 0, 0)
    first, second = list_alarms(tmp_path / "alarms.db")
    expected = default_location("T0000001")
    assert first["location"] == {
        "lat": expected.lat,
        "lon": expected.lon,
        "source": "carrier",
        "age": 0.0,
        "accuracy_m": expected.accuracy_m,
        "cell_id": expected.cell_id,
    }
    assert second["location"] == make_alarm(2)["location"]
    assert entries(conn)[0].payload["location"]["source"] == "carrier"


def test_a_terminal_the_carrier_does_not_know_still_raises_its_alarm(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    enqueue(conn, "alarm", make_alarm(1, location=NO_LOCATION), "alarm-center")
    table = {"OTHER": CellLocation("OTHER", 1.0, 2.0, 100.0, "001-01-1-1")}
    with (
        AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center,
        CarrierService(table, host_key=KEY) as carrier,
    ):
        locator = CarrierLocator(carrier.url, KEY)
        assert asyncio.run(locator.locate("OTHER")) == {
            "lat": 1.0,
            "lon": 2.0,
            "accuracy_m": 100.0,
            "cell_id": "001-01-1-1",
        }
        worker = OutboxWorker(
            conn,
            ManualClock(),
            {"alarm": AlarmDeliverer(center.url, KEY)},
            preparers={"alarm": locator.fill_location},
        )
        assert drain(worker) == (1, 0, 0)
    [stored] = list_alarms(tmp_path / "alarms.db")
    assert stored["location"]["source"] == "none"


def test_locator_errors_are_retryable() -> None:
    locator = CarrierLocator(f"http://127.0.0.1:{free_port()}", KEY, timeout=1)
    with pytest.raises(RetryableDeliveryError):
        asyncio.run(locator.locate("T1"))
