"""Routing a customer to the ATM reached soonest: in service, enough cash, travel time
with simulated congestion plus the expected queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient  # conftest imported it quietly first

from atm_common.clock import ManualClock
from host_link.codes import NetworkCode
from sim.host.api import create_app
from sim.host.cardless.phone import PhoneBank
from sim.host.routing import (
    RouteModel,
    busyness,
    congestion,
    expected_wait,
    haversine_km,
    rank_atms,
)
from tests.host.helpers import ALICE, DEMO_SEED, Host, Terminal, open_host

CUSTOMER = (52.5215, 13.4075)  # near Main Street (ATM00001)
EXTRA = {  # id: (lat, lon, cash)
    "ATMFAR01": (52.5500, 13.4500, 1_000_000),  # ~4.5 km away
    "ATMLOW01": (52.5205, 13.4060, 5_000),  # next door, nearly empty
    "ATMDOWN1": (52.5210, 13.4055, 1_000_000),  # next door, never heard from
    "ATMOFF01": (52.5212, 13.4070, 1_000_000),  # next door, signed off
    "ATMBUSY1": (52.5220, 13.4090, 1_000_000),  # next door, a queue
}


def routing_seed(path: Path) -> Path:
    """The demo bank plus ATMs around Main Street (TDES, a key set each)."""
    extra = "".join(
        f'\n[[terminals]]\nid = "{tid}"\nsite = "{tid} site"\nlat = {lat}\nlon = {lon}\n'
        f'cash = {cash}\nsecurity = "tdes"\ntmk = "{f"{i + 1:02X}" * 8}{"5A" * 8}"\n'
        for i, (tid, (lat, lon, cash)) in enumerate(EXTRA.items())
    )
    text = DEMO_SEED.read_text()
    at = text.index("[[persons]]")
    path.write_text(text[:at] + extra + "\n" + text[at:])
    return path


@pytest.fixture
def world(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Host, ManualClock, Path]]:
    seed = routing_seed(tmp_path / "seed.toml")
    host = open_host(tmp_path / "host.db", clock, seed)
    yield host, clock, seed
    host.conn.close()


def heard(host: Host, clock: ManualClock, seed: Path, tid: str, code: str) -> Terminal:
    terminal = Terminal(clock, tid, seed)
    answer = host.authoriser.handle(terminal.client.stamp({"t": "0800", "70": code}))
    assert answer is not None and answer["39"] == "00"
    return terminal


def test_the_nearest_atm_with_cash_and_no_queue_comes_first(
    world: tuple[Host, ManualClock, Path],
) -> None:
    host, clock, seed = world
    for tid in ("ATM00001", "ATM00002", "ATMFAR01", "ATMLOW01", "ATMOFF01"):
        heard(host, clock, seed, tid, NetworkCode.SIGN_ON)
    heard(host, clock, seed, "ATMOFF01", NetworkCode.SIGN_OFF)
    busy = Terminal(clock, "ATMBUSY1", seed)
    busy.key_exchange(host)
    for _ in range(25):  # 25 sessions in the last hour: about 10 minutes of queue
        clock.advance(60)
        answer = host.authoriser.handle(busy.withdrawal(ALICE, 1_000))
        assert answer is not None and answer["39"] == "00"

    ranked = rank_atms(host.conn, clock.now(), *CUSTOMER, 10_000)
    order = [a["terminal_id"] for a in ranked["atms"]]
    assert order[0] == "ATM00001"
    assert order.index("ATMBUSY1") > order.index("ATM00001")
    assert order.index("ATMFAR01") < order.index("ATM00002")  # airport: ~18 km
    excluded = {e["terminal_id"]: e["reason"] for e in ranked["excluded"]}
    assert excluded == {
        "ATMLOW01": "not enough cash",
        "ATMDOWN1": "not in service (unknown)",
        "ATMOFF01": "not in service (signed_off)",
    }
    by_id = {a["terminal_id"]: a for a in ranked["atms"]}
    near, queue, far = by_id["ATM00001"], by_id["ATMBUSY1"], by_id["ATMFAR01"]
    assert near["distance_km"] < 0.5 < 4 < far["distance_km"] < 7
    assert near["wait_min"] == 0 and queue["sessions_per_hour"] == 25
    assert 9 < queue["wait_min"] < 11
    for atm in ranked["atms"]:
        assert atm["congestion"] >= 1
        assert atm["total_min"] == pytest.approx(atm["eta_min"] + atm["wait_min"], abs=0.02)
    # The cash estimate follows the ledger: 25 x 10.00 went out of the busy ATM.
    cash = host.conn.execute("SELECT cash_on_hand FROM terminals WHERE id = 'ATMBUSY1'").fetchone()
    assert cash[0] == 1_000_000 - 25_000

    # A small amount the nearly empty ATM can still pay: it is a candidate again.
    small = rank_atms(host.conn, clock.now(), *CUSTOMER, 5_000)
    assert "ATMLOW01" in [a["terminal_id"] for a in small["atms"]]

    # Over the API, with the same answer.
    with TestClient(create_app(PhoneBank(host.authoriser.cardless))) as api:
        got = api.get(
            "/atms/route", params={"lat": CUSTOMER[0], "lon": CUSTOMER[1], "amount": 10_000}
        )
        assert got.status_code == 200
        assert [a["terminal_id"] for a in got.json()["atms"]] == order
        assert api.get("/atms/route", params={"lat": 91, "lon": 0, "amount": 1}).status_code == 422
        assert api.get("/atms/route", params={"lat": 0, "lon": 0, "amount": 0}).status_code == 422


def test_the_traffic_model_is_deterministic_and_bounded() -> None:
    noon = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    at = (52.52, 13.405)
    assert congestion(*at, noon) == congestion(*at, noon)  # same place and time, same answer
    # 08:00 local solar time in Berlin (UTC+~0.9 h) is the morning peak; 03:00 is quiet.
    peak = dt.datetime(2026, 1, 1, 7, 6, tzinfo=dt.UTC)
    night = dt.datetime(2026, 1, 1, 2, 6, tzinfo=dt.UTC)
    assert congestion(*at, peak) > congestion(*at, noon) > congestion(*at, night) >= 1
    for lat in (52.50, 52.51, 52.52, 48.13):
        assert 0.3 <= busyness(lat, 13.4) < 1.0
        assert 1.0 <= congestion(lat, 13.4, peak) <= 2.5
    assert haversine_km(52.0, 13.0, 53.0, 13.0) == pytest.approx(111.2, abs=0.1)
    model = RouteModel()
    waits = [expected_wait(rate, model) for rate in (0, 10, 20, 29, 30, 100)]
    assert waits[0] == 0 and waits == sorted(waits) and waits[-1] == model.max_wait_min


def test_a_fresh_demo_host_routes_nowhere_until_atms_are_heard(
    tmp_path: Path, clock: ManualClock
) -> None:
    host = open_host(tmp_path / "host.db", clock)
    try:
        ranked = rank_atms(host.conn, clock.now(), 52.52, 13.405, 10_000)
        assert ranked["atms"] == []
        assert {e["reason"] for e in ranked["excluded"]} == {"not in service (unknown)"}
    finally:
        host.conn.close()
