"""Replenishment end to end in one process: terminal exchange -> host books -> printed report."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.host.supervision.schema import DIFFERENCE_ACCOUNT
from terminal.drivers.printer.escpos import EscPosPrinter
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.exchange import StorageExchange
from terminal.supervisor.receipts import balancing_report, session_receipt
from terminal.supervisor.roles import SupervisorMode, key_digest
from tests.host.helpers import Host, Terminal, demo_cards, open_host

CASH = "GL-CASH-ATM00001"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Host, Terminal, CashCounters]]:
    clock = ManualClock()
    host = open_host(tmp_path / "host.db", clock)
    terminal = Terminal(clock)
    terminal.key_exchange(host)
    # the host serves an exchange only to a replenisher it has in supervisor mode
    entered = host.authoriser.handle(
        terminal.client.stamp({"t": "0800", "70": "171", "63": "replenisher"})
    )
    assert entered is not None and entered["39"] == "00"
    counters = CashCounters(tmp_path / "cash.db")
    counters.configure([(1, 10_000, 2_000), (2, 2_000, 2_000)])
    yield host, terminal, counters
    counters.close()
    host.conn.close()


def _sender(host: Host, terminal: Terminal):  # type: ignore[no-untyped-def]
    async def send(code: str, data: str) -> Mapping[str, str]:
        request = {"t": "0800", "70": code} | ({"63": data} if data else {})
        response = host.authoriser.handle(terminal.client.stamp(request))
        assert response is not None
        return response

    return send


def test_replenishment_reports_the_exact_difference_and_prints_it(
    rig: tuple[Host, Terminal, CashCounters], tmp_path: Path
) -> None:
    host, terminal, counters = rig
    opening = host.balance(CASH)  # the seed's cash for ATM00001
    # The terminal's books: loaded to match the host, then a 200.00 withdrawal.
    counters.load({1: opening // 10_000, 2: 0})
    response = host.authoriser.handle(terminal.withdrawal(demo_cards()["alice"], 20_000))
    assert response is not None and response["39"] == "00"
    counters.record(1, dispensed=2)
    exchange = StorageExchange(counters, _sender(host, terminal))
    before = asyncio.run(exchange.start())
    assert before.host_expected == before.counters == opening - 20_000
    with pytest.raises(SupervisorError, match="over its capacity"):
        exchange.set_found(1, 10_000, 5_000)
    with pytest.raises(SupervisorError, match="unknown denomination"):
        exchange.set_found(2, 5_000, 1)
    with pytest.raises(SupervisorError, match="negative"):
        exchange.set_found(1, 10_000, -1)
    # the bins are bounded by the cassette's capacity too: a typo is not a huge overage
    with pytest.raises(SupervisorError, match="rejected 2001 is over its capacity 2000"):
        exchange.set_found(1, 10_000, 10, rejected=2_001)
    with pytest.raises(SupervisorError, match="retracted 99999 is over its capacity 2000"):
        exchange.set_found(1, 10_000, 10, retracted=99_999)
    with pytest.raises(SupervisorError, match="not counted"):
        asyncio.run(exchange.end())
    # one 100.00 note is missing from cassette 1; a 20.00 note is found in the reject bin
    exchange.set_found(1, 10_000, opening // 10_000 - 2 - 1)
    exchange.set_found(2, 2_000, 0, rejected=1)
    exchange.set_load(1, 10_000, 1_000)
    exchange.set_load(2, 2_000, 500)
    shown = counters.cassettes()
    result = asyncio.run(exchange.end())
    assert (result.found, result.difference, result.loaded) == (
        opening - 20_000 - 10_000 + 2_000,
        -8_000,
        11_000_000,
    )
    assert host.balance(CASH) == 11_000_000 and host.balance(DIFFERENCE_ACCOUNT) == 8_000
    assert [c.remaining for c in counters.cassettes()] == [1_000, 500]

    emulator = EscPosEmulator()
    with EscPosPrinter(register("balancing-report", emulator)) as printer:
        lines = balancing_report(
            terminal="ATM00001", when="2026-12-07 11:00", role="replenisher",
            before=shown, result=result, currency="840",
        )  # fmt: skip
        printer.print_receipt(lines, title="BALANCING REPORT")
        printer.print_receipt(
            session_receipt(
                terminal="ATM00001", when="2026-12-07 11:01", pan=demo_cards()["alice"].pan,
                kind="withdrawal", amount=20_000, result="approved", currency="840",
            ),
            title="RECEIPT",
        )  # fmt: skip
    text, png = emulator.save(tmp_path, index=0, name="balancing")
    report = text.read_text()
    assert "DIFFERENCE" in report and "-80.00" in report and "SHORTAGE" in report
    assert png.stat().st_size > 500
    receipt = emulator.receipts[1]
    pan = demo_cards()["alice"].pan
    assert any(pan[:6] + "******" + pan[-4:] in line for line in receipt)
    assert not any(pan in line for line in receipt) and not any("PIN" in x for x in receipt)


def test_roles_and_between_customers_only() -> None:
    mode = SupervisorMode({"replenisher": key_digest("r-key"), "technician": key_digest("t-key")})
    with pytest.raises(SupervisorError, match="between customers"):
        mode.enter("r-key", in_session=True)
    with pytest.raises(SupervisorError, match="not recognised"):
        mode.enter("guess", in_session=False)
    assert mode.enter("r-key", in_session=False) == "replenisher"
    mode.require("exchange")
    with pytest.raises(SupervisorError, match="not allowed to the replenisher"):
        mode.require("keys")
    assert mode.leave() == "replenisher"
    assert mode.enter("t-key", in_session=False) == "technician"
    with pytest.raises(SupervisorError, match="exchange: not allowed"):
        mode.require("exchange")
