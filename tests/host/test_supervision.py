"""The host's side of supervision: balancing a cash exchange to the cent, status lists."""

from __future__ import annotations

import json
import subprocess
import sys

from host_link.supervision import CassetteCount, DeviceEntry, encode_exchange, encode_status, pairs
from sim.host.routing import rank_atms
from sim.host.supervision.fleet import list_terminals, not_serving
from sim.host.supervision.schema import DIFFERENCE_ACCOUNT, VAULT_ACCOUNT
from tests.host.helpers import Host, Terminal, demo_cards

ALICE = demo_cards()["alice"]
CASH = "GL-CASH-ATM00001"


def _net(host: Host, terminal: Terminal, code: str, data: str = "") -> dict[str, str]:
    request = {"t": "0800", "70": code} | ({"63": data} if data else {})
    response = host.authoriser.handle(terminal.client.stamp(request))
    assert response is not None and response["t"] == "0810" and response["70"] == code
    return dict(response)


def _start(host: Host, terminal: Terminal) -> tuple[str, int]:
    """Supervisor mode as replenisher (0800/171), then StartExchange: (exchange id, H)."""
    assert _net(host, terminal, "171", "replenisher")["39"] == "00"
    start = _net(host, terminal, "181")
    assert start["39"] == "00"
    figures = pairs(start["63"])
    assert set(figures) == {"X", "H"}
    return figures["X"], int(figures["H"])


def _found(amount: int) -> list[CassetteCount]:
    """Cassettes holding ``amount``: 100.00 notes, one 20.00 note in the reject bin."""
    assert amount % 10_000 == 2_000
    return [
        CassetteCount(1, 10_000, 50, 0, 0, 0, amount // 10_000),
        CassetteCount(2, 2_000, rejected=1),
    ]


def test_exchange_balances_to_the_cent_and_books_a_shortage(host: Host, terminal: Terminal) -> None:
    opening = host.balance(CASH)
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 20_000))
    assert response is not None and response["39"] == "00"
    xid, host_cash = _start(host, terminal)
    assert host_cash == opening - 20_000
    expected = opening - 20_000
    found = expected - 8_000  # 80.00 missing
    loaded = [(1, 10_000, 200), (2, 2_000, 500)]
    end = _net(host, terminal, "182", encode_exchange(_found(found), loaded, xid))
    figures = pairs(end["63"])
    assert end["39"] == "00" and figures["X"] == xid
    assert (figures["H"], figures["F"], figures["D"], figures["L"]) == (
        str(expected),
        str(found),
        "-8000",
        "3000000",
    )
    assert host.balance(CASH) == 3_000_000  # exactly the new load
    assert host.balance(DIFFERENCE_ACCOUNT) == 8_000  # the shortage, posted, not absorbed
    assert host.balance(VAULT_ACCOUNT) == found - 3_000_000
    assert host.ledger.check() == []
    row = host.conn.execute("SELECT difference FROM cash_exchanges").fetchone()
    assert row[0] == -8_000
    (fleet,) = [t for t in list_terminals(host.conn) if t["terminal_id"] == "ATM00001"]
    assert fleet["cash_on_hand"] == 3_000_000 and fleet["mode"] == "supervisor"


def test_an_overage_is_posted_the_other_way(host: Host, terminal: Terminal) -> None:
    expected = host.balance(CASH)
    xid, _ = _start(host, terminal)
    end = _net(host, terminal, "182", encode_exchange(_found(expected + 2_000), [], xid))
    assert pairs(end["63"])["D"] == "2000"
    assert host.balance(DIFFERENCE_ACCOUNT) == -2_000 and host.balance(CASH) == 0
    assert host.ledger.check() == []


def test_nonsense_counts_are_refused_and_change_nothing(host: Host, terminal: Terminal) -> None:
    before = host.balance(CASH)
    xid, _ = _start(host, terminal)
    bad = encode_exchange([CassetteCount(1, 10_000, remaining=-1)], [], xid)
    assert _net(host, terminal, "182", bad)["39"] == "30"
    assert _net(host, terminal, "182", f"X={xid};K=1:2;N=")["39"] == "30"
    assert _net(host, terminal, "182", encode_exchange([], [(1, 10_000, -5)], xid))["39"] == "30"
    # without the 181's id: a format error, X named
    assert _net(host, terminal, "182", encode_exchange(_found(2_000), []))["39"] == "30"
    assert host.balance(CASH) == before
    assert host.conn.execute("SELECT COUNT(*) FROM cash_exchanges").fetchone()[0] == 0


def test_a_resent_182_is_answered_again_and_booked_once(host: Host, terminal: Terminal) -> None:
    """The 182's answer is lost and the terminal sends it again: same figures, one booking."""
    expected = host.balance(CASH)
    xid, _ = _start(host, terminal)
    data = encode_exchange(_found(expected - 8_000), [(1, 10_000, 200)], xid)
    first = _net(host, terminal, "182", data)
    again = _net(host, terminal, "182", data)
    assert first["39"] == again["39"] == "00"
    assert pairs(again["63"]) == pairs(first["63"])
    assert pairs(first["63"])["D"] == "-8000"
    assert host.count("cash_exchanges") == 1
    assert host.balance(DIFFERENCE_ACCOUNT) == 8_000  # not 16_000
    assert host.balance(CASH) == 2_000_000
    assert host.ledger.check() == []
    assert host.count("supervision_events", "kind = ?", "exchange_repeat") == 1
    (fleet,) = [t for t in list_terminals(host.conn) if t["terminal_id"] == "ATM00001"]
    assert fleet["last_exchange"]["id"] == xid


def test_an_unknown_or_foreign_exchange_id_is_refused(host: Host, terminal: Terminal) -> None:
    other = Terminal(host.clock, "ATM00002")  # DUKPT: no key exchange to make
    theirs, _ = _start(host, other)
    mine, _ = _start(host, terminal)
    before = host.balance(CASH)
    for xid in ("Xdeadbeef0000", theirs):
        refused = _net(host, terminal, "182", encode_exchange(_found(2_000), [], xid))
        assert refused["39"] == "25"
    # a new 181 supersedes the open id: the old one is no longer open
    newer, _ = _start(host, terminal)
    assert newer != mine
    assert _net(host, terminal, "182", encode_exchange(_found(2_000), [], mine))["39"] == "25"
    # another terminal cannot replay a booked id either
    assert _net(host, terminal, "182", encode_exchange(_found(2_000), [], newer))["39"] == "00"
    assert _net(host, other, "182", encode_exchange(_found(2_000), [], newer))["39"] == "25"
    assert host.count("cash_exchanges") == 1
    assert before and host.balance(CASH) == 0  # the one booking: the new load (none)


def test_exchange_needs_the_host_to_have_a_replenisher_in_supervisor_mode(
    host: Host, terminal: Terminal
) -> None:
    before = host.balance(CASH)
    assert _net(host, terminal, "181")["39"] == "57"  # never entered
    assert _net(host, terminal, "171", "technician")["39"] == "00"
    assert _net(host, terminal, "181")["39"] == "57"  # wrong role
    _net(host, terminal, "172")
    xid, _ = _start(host, terminal)
    _net(host, terminal, "172")  # left supervisor mode: the open exchange is no longer served
    assert _net(host, terminal, "182", encode_exchange(_found(2_000), [], xid))["39"] == "57"
    assert host.balance(CASH) == before and host.count("cash_exchanges") == 0
    # the key path's role: only the known ones
    assert _net(host, terminal, "171", "janitor")["39"] == "57"
    assert _net(host, terminal, "171", "rm -rf")["39"] == "30"
    assert _net(host, terminal, "171")["39"] == "30"
    (fleet,) = [t for t in list_terminals(host.conn) if t["terminal_id"] == "ATM00001"]
    assert fleet["mode"] == "in_service" and fleet["supervisor"] == ""


def test_status_list_reaches_the_fleet_view_and_routing(host: Host, terminal: Terminal) -> None:
    jam = DeviceEntry("dispenser", "fault", "now", "engineer")
    paper = DeviceEntry("printer", "degraded", "soon", "operator")
    status = encode_status("in_service", 900_000, [jam, paper])
    assert _net(host, terminal, "161", status)["39"] == "00"
    (atm,) = [t for t in list_terminals(host.conn) if t["terminal_id"] == "ATM00001"]
    assert atm["attention"] == "now" and atm["reported_cash"] == 900_000
    assert {d["kind"]: d["attention"] for d in atm["devices"]} == {
        "dispenser": "now",
        "printer": "soon",
    }
    assert not_serving(host.conn) == {"ATM00001": "dispenser needs attention now"}
    routed = rank_atms(host.conn, host.clock.now(), 40.0, -74.0, 1_000)
    assert {"terminal_id": "ATM00001", "reason": "dispenser needs attention now"} in routed[
        "excluded"
    ]
    # the engineer clears the jam: the next status clears the attention by itself
    ok = DeviceEntry("dispenser", "ok", "none", "none")
    _net(host, terminal, "161", encode_status("in_service", 900_000, [ok, paper]))
    assert not_serving(host.conn) == {}
    assert _net(host, terminal, "171", "replenisher")["39"] == "00"
    assert not_serving(host.conn) == {"ATM00001": "in supervisor mode"}
    _net(host, terminal, "172")
    assert not_serving(host.conn) == {}


def test_bad_status_is_a_format_error(host: Host, terminal: Terminal) -> None:
    assert _net(host, terminal, "161", "M=x;C=1;D=printer:ok:urgent:me")["39"] == "30"


def test_atm_host_status_lists_every_terminal(host: Host, terminal: Terminal) -> None:
    jam = DeviceEntry("dispenser", "fault", "now", "engineer")
    _net(host, terminal, "161", encode_status("in_service", 900_000, [jam]))
    run = subprocess.run(
        [sys.executable, "-m", "atm", "host", "status", "--db", str(host.path), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    terminals = {t["terminal_id"]: t for t in json.loads(run.stdout)["terminals"]}
    seeded = host.conn.execute("SELECT COUNT(*) FROM terminals").fetchone()[0]
    assert len(terminals) == seeded >= 2
    assert terminals["ATM00001"]["attention"] == "now"
    assert terminals["ATM00001"]["devices"][0]["actor"] == "engineer"
    assert terminals["ATM00001"]["last_seen"] is not None
    text = subprocess.run(
        [sys.executable, "-m", "atm", "host", "status", "--db", str(host.path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "ATM00001" in text and "dispenser: fault, now (engineer)" in text
    assert "ATM00002" in text and "no device status reported yet" in text
