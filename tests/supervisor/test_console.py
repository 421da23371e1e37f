"""Supervisor mode on a live terminal and host (real TCP, real SQLite): a replenishment
with a difference, the printer running out of paper, a jam that needs an engineer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.host.supervision.fleet import list_terminals
from sim.scenarios.scripts import BALANCE as F2
from sim.scenarios.scripts import WITHDRAW, Scenario
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.drivers.printer.escpos import EscPosPrinter
from terminal.fsm.customer import State
from terminal.supervisor.console import SupervisorConsole
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.roles import SupervisorMode, key_digest
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig

WITHDRAW_100 = Scenario(
    "w", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispensed", 10_000
)
BALANCE = Scenario("b", "ALICE ARDEN", [Pin("1234"), F2, Keys("")], "balance_shown")
KEYS = {"replenisher": key_digest("rep-key"), "technician": key_digest("tech-key")}


def _setup(rig: Rig, tmp_path: Path, paper: int = 2000) -> tuple[SupervisorConsole, EscPosEmulator]:
    emulator = EscPosEmulator(paper_lines=paper, low_at=5)
    printer = EscPosPrinter(register(f"console-{tmp_path.name}", emulator))
    printer.open()
    rig.terminal.devices.printer = printer
    counters = CashCounters(tmp_path / "cash.db")
    cassettes = rig.dispenser.cassettes()
    counters.configure([(c.index, c.denomination, 2_000) for c in cassettes])
    counters.load({c.index: c.count for c in cassettes})
    return SupervisorConsole(rig.terminal, SupervisorMode(KEYS), counters), emulator


def _fleet(rig: Rig) -> dict[str, Any]:
    rows = list_terminals(rig.host.authoriser.conn)
    return next(t for t in rows if t["terminal_id"] == rig.terminal.config.terminal_id)


def test_replenishment_with_a_difference_and_the_printer_running_out(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        console, emulator = _setup(rig, tmp_path, paper=40)
        terminal = rig.terminal
        cash = f"GL-CASH-{terminal.config.terminal_id}"
        # a customer's withdrawal, with a printed receipt (PAN masked)
        card, _ = rig.cards["ALICE ARDEN"]
        card, _ = rig.cards["ALICE ARDEN"]
        result = await rig.play(WITHDRAW_100)
        assert result.dispensed == 10_000, result
        receipt = "\n".join(emulator.receipts[-1])
        assert card.pan[:6] + "******" + card.pan[-4:] in receipt and card.pan not in receipt

        role = await console.enter("rep-key")
        assert role == "replenisher" and terminal.state is State.OUT_OF_SERVICE
        assert not await terminal.ready()  # no customers in supervisor mode
        assert _fleet(rig)["mode"] == "supervisor"
        with pytest.raises(SupervisorError, match="not allowed"):
            console.mode.require("keys")
        expected = rig.balance(cash)
        # the replenisher counts what is physically in each cassette
        counted = {c.index: c for c in rig.dispenser.cassettes()}
        found = {p: (c.denomination, c.count, 0, 0) for p, c in counted.items()}
        first = min(found)
        denom, remaining, rejected, retracted = found[first]
        found[first] = (denom, remaining - 1, rejected, retracted)  # one note missing
        load = {p: (c.denomination, 100) for p, c in counted.items()}
        balancing, _ = await console.replenish(found, load)
        assert balancing.host_expected == expected
        physical = sum(c.value for c in counted.values()) - denom
        # The demo seed's books and the demo dispenser's cassettes differ before we start;
        # the report gives the exact difference, the missing note included, to the cent.
        assert balancing.found == physical
        assert balancing.difference == physical - expected
        assert rig.balance(cash) == sum(100 * c.denomination for c in counted.values())
        # the dispenser now holds the new load; a second count of it balances exactly
        for p, (_, n) in load.items():
            rig.dispenser.notes.slots[p].count = n
        again, _ = await console.replenish({p: (d, n, 0, 0) for p, (d, n) in load.items()}, load)
        assert again.difference == 0 and again.host_expected == again.found
        events = [e.event for e in terminal.journal.tail(30)]
        assert "cash_difference" in events and "report_printed" in events
        first_report = emulator.receipts[-2]
        assert first_report[0] == "BALANCING REPORT"
        assert any("SHORTAGE" in line for line in first_report)
        # 40 lines of paper: it ran out during the second report (mid-day), journaled
        assert events[-1] == "report_not_printed" and emulator.roll.lines_left == 0
        text, png = emulator.save(tmp_path / "out", index=-2, name="balancing")
        assert "DIFFERENCE" in text.read_text() and png.stat().st_size > 0
        await console.leave()
        assert terminal.machine.state is State.IDLE and _fleet(rig)["mode"] == "in_service"

        # no paper: the next customer is told before the transaction
        assert isinstance(terminal.display, RecordingDisplay)
        result = await rig.play(BALANCE)
        assert result.outcome == "balance_shown"
        assert any(s is Screen.NO_RECEIPT for s, _ in terminal.display.shown)
        await console.send_status(cash=rig.balance(cash))
        printer_row = {d["kind"]: d for d in _fleet(rig)["devices"]}["printer"]
        assert (printer_row["attention"], printer_row["actor"]) == ("now", "operator")

    with_rig(body)


def test_a_jam_needs_an_engineer_then_clears(with_rig: Callable[..., Any], tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        console, _ = _setup(rig, tmp_path)
        rig.dispenser.inject_jam(after_notes=0)
        await rig.play(dataclasses.replace(WITHDRAW_100, expected="dispense_failed"))
        await console.send_status()
        fleet = _fleet(rig)
        dispenser = {d["kind"]: d for d in fleet["devices"]}["dispenser"]
        assert (dispenser["attention"], dispenser["actor"]) == ("now", "engineer")
        assert fleet["attention"] == "now"
        with pytest.raises(SupervisorError, match="not recognised"):
            await console.enter("nope")
        await console.enter("tech-key")
        console.mode.require("clear_fault")
        rig.dispenser.reset()
        await console.leave()
        await console.send_status()
        dispenser = {d["kind"]: d for d in _fleet(rig)["devices"]}["dispenser"]
        assert dispenser["attention"] == "none"

    with_rig(body)


class _Crash(BaseException):
    """The terminal dying between the host's commit and loading its counters."""


def test_the_next_exchange_start_recovers_a_182_the_terminal_never_saw_end(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        console, _ = _setup(rig, tmp_path)
        cash = f"GL-CASH-{rig.terminal.config.terminal_id}"
        await console.enter("rep-key")
        exchange, _ = await console.start_exchange()
        for c in rig.dispenser.cassettes():
            exchange.set_found(c.index, c.denomination, c.count)
            exchange.set_load(c.index, c.denomination, 100)

        async def dies_after_the_host(code: str, data: str) -> Any:
            await console.send(code, data)  # the host books it ...
            raise _Crash  # ... and the terminal never sees the answer

        exchange.send = dies_after_the_host
        with pytest.raises(_Crash):
            await console.end_exchange(exchange, [])
        loaded = {c.position: c.loaded for c in console.counters.cassettes()}
        assert set(loaded.values()) != {100}  # stale: the old load
        booked = rig.balance(cash)
        # the replenisher (after the restart) starts the next exchange: asked first
        again, _ = await console.start_exchange()
        assert {c.position: c.loaded for c in console.counters.cassettes()} == dict.fromkeys(
            loaded, 100
        )
        ended = rig.terminal.journal.latest("exchange_end")
        assert ended is not None and ended.data["recovered"] is True
        assert again.before is not None and again.before.host_expected == booked
        rows = rig.host.authoriser.conn.execute("SELECT COUNT(*) FROM cash_exchanges")
        assert rows.fetchone()[0] == 1

    with_rig(body)
