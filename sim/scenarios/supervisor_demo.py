"""The demo's supervisor and device status sections (``atm demo --json``: "supervisor",
"device_status").

A receipt printer (the ESC/POS emulator behind a real pty) is attached to the demo
terminal from the start, so every session prints its receipt. Then, in order: the paper
runs out in the middle of a receipt (mid-day) and the next customer is told before the
transaction; an operator changes the roll; a dispenser jam needs an engineer (technician
role, entering with a supervisor card and its PIN), who clears it; a replenisher balances
the machine against the host, and the report (with the difference the count found) comes
out of the printer as text and PNG. After each step the terminal sends its device status
list and the host's fleet view is read, to show the attention raised and cleared by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.devices.launcher import DEMO_SUPERVISOR_KEYS as DEMO_KEYS
from sim.devices.launcher import STAFF_BIN
from sim.devices.printer import EscPosEmulator
from sim.devices.pty import PtyBridge
from sim.host.db import connect_readonly
from sim.host.supervision.fleet import list_terminals
from sim.scenarios.scripts import BALANCE, WITHDRAW, Customer, Scenario
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.dispenser.notes import NotePath
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.drivers.printer.escpos import EscPosPrinter
from terminal.supervisor.console import SupervisorConsole
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.roles import SupervisorMode, key_digest

# the demo seed's technician card (sim/data/demo-seed.toml [[supervisor_cards]])
TECHNICIAN_CARD = CardData(pan="6009990000000026", expiry="3012", track2="6009990000000026=3012201")
TECHNICIAN_PIN = "8520"
BALANCE_ONLY = Scenario(
    "balance, the printer runs out of paper",
    "BOB BRANDT",
    [Pin("4321"), BALANCE, Keys("")],
    "balance_shown",
)
SESSIONS = ("balance, the printer runs out of paper", "withdrawal, the dispenser jams")
JAMMED = Scenario(
    "withdrawal, the dispenser jams",
    "ALICE ARDEN",
    [Pin("1234"), WITHDRAW, Keys("20")],
    "dispense_failed",
)


@contextlib.contextmanager
def attach_printer(terminal: Terminal, workdir: Path) -> Iterator[EscPosEmulator]:
    """The ESC/POS emulator on a pty as the terminal's printer, for the whole run."""
    emulator = EscPosEmulator(paper_lines=5000, low_at=40)
    with PtyBridge(emulator, "printer", interval=0.005) as bridge:
        printer = EscPosPrinter(bridge.path)
        printer.open()
        terminal.devices.printer = printer
        try:
            yield emulator
        finally:
            terminal.devices.printer = None
            printer.close()


@contextlib.contextmanager
def keep_counters(terminal: Terminal, workdir: Path) -> Iterator[CashCounters]:
    """The terminal's cassette counters for the whole run, loaded with what the cassettes
    hold at the start of the day (the sessions book retracted notes in them)."""
    counters = CashCounters(workdir / "cash-counters.db")
    cassettes = terminal.devices.dispenser.cassettes()
    counters.configure([(c.index, c.denomination, 2_000) for c in cassettes])
    counters.load({c.index: c.count for c in cassettes})
    terminal.cash_counters = counters
    try:
        yield counters
    finally:
        terminal.cash_counters = None
        counters.close()


def _fleet(db_path: Path, terminal_id: str) -> dict[str, Any]:
    conn = connect_readonly(db_path)
    try:
        return next(t for t in list_terminals(conn) if t["terminal_id"] == terminal_id)
    finally:
        conn.close()


async def play(
    terminal: Terminal,
    customer: Customer,
    cards: dict[str, tuple[CardData, str]],
    db_path: Path,
    workdir: Path,
    emulator: EscPosEmulator,
    counters: CashCounters,
    run_sessions: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Both sections, and the sessions played (for the demo's reconciliation)."""
    tid = terminal.config.terminal_id
    keys = {role: key_digest(key) for role, key in DEMO_KEYS.items()}
    console = SupervisorConsole(terminal, SupervisorMode(keys), counters)
    timeline: list[dict[str, Any]] = []

    async def snapshot(step: str) -> None:
        await console.send_status()
        fleet = _fleet(db_path, tid)
        timeline.append({"step": step, "attention": fleet["attention"], "mode": fleet["mode"],
                         "devices": {d["kind"]: [d["attention"], d["actor"]]
                                     for d in fleet["devices"]}})  # fmt: skip

    sessions: list[dict[str, Any]] = []
    await snapshot("start of day")
    # mid-day: the roll runs out during a receipt; the next customer is told first
    with_lines = emulator.roll.lines_left
    emulator.load_paper(3)
    sessions += await run_sessions(terminal, customer, [BALANCE_ONLY, BALANCE_ONLY], cards)
    await snapshot("paper out")
    events = [e.event for e in terminal.journal.tail(80)]
    paper = {
        "receipt_cut_short": "receipt_not_printed" in events,
        "customer_told_before": "no_receipt_offered" in events,
    }
    emulator.load_paper(with_lines)
    await snapshot("paper changed")
    # a jam: the engineer's, now
    far: Any = customer.dispenser  # the device's far side: sim or the emulator behind a pty
    far.inject_jam(after_notes=0)
    sessions += await run_sessions(terminal, customer, [JAMMED], cards)
    await snapshot("dispenser jam")
    # the engineer comes with the technician's supervisor card: its PIN, the host's role
    section = dataclasses.replace(terminal.config.supervisor, card_prefixes=(STAFF_BIN,))
    terminal.config = dataclasses.replace(terminal.config, supervisor=section)
    customer.pinpad.script(Pin(TECHNICIAN_PIN))
    customer.reader.insert(TECHNICIAN_CARD)
    await terminal.serve_one()
    role = terminal.supervisor or ""
    console.mode.require("clear_fault")
    far.reset()  # the engineer clears the note path
    await console.leave()
    await snapshot("jam cleared by the engineer")
    # replenishment: the replenisher counts each cassette and, of its notes, the reject
    # and retract bins (the retracted cash of the customer who walked away is there, and
    # the host expects it back: the session was reversed); one note is short
    replenisher = await console.enter(DEMO_KEYS["replenisher"])
    found = replenisher_count(far.notes)
    first = min(found)
    denom, remaining, rejected, retracted = found[first]
    found[first] = (denom, remaining - 1, rejected, retracted)
    # the bins go to the vault; what is really in the cassettes goes back in
    load = {p: (d, left) for p, (d, left, _, _) in found.items()}
    balancing, lines = await console.replenish(found, load)
    journal_lines = console.print_journal(12)
    await console.leave()
    await snapshot("replenishment")
    report_txt, report_png = emulator.save(workdir / "printer", index=-2, name="balancing-report")
    journal_txt, _ = emulator.save(workdir / "printer", index=-1, name="journal-printout")
    receipt_txt, receipt_png = emulator.save(workdir / "printer", index=0, name="first-receipt")
    exchange = {
        "host_expected": balancing.host_expected,
        "counters": balancing.counters,
        "found": balancing.found,
        "difference": balancing.difference,
        "loaded": balancing.loaded,
        "exchange_id": balancing.exchange_id,
    }
    supervisor = {
        "roles": [role, replenisher],
        "technician_by_card": role == "technician",
        "exchange": exchange,
        # to the cent: the one note short, nothing else (host books and machine agree)
        "difference_expected": -denom,
        "difference_reported": balancing.difference != 0 and any("DIFFERENCE" in x for x in lines),
        "report": {"text": str(report_txt), "png": str(report_png)},
        "journal_printout": {"text": str(journal_txt), "lines": len(journal_lines)},
        "first_receipt": {"text": str(receipt_txt), "png": str(receipt_png)},
        "receipts_printed": len(emulator.receipts),
        "paper": paper,
    }
    supervisor["ok"] = (
        bool(supervisor["difference_reported"])
        and balancing.difference == -denom
        and all(paper.values())
        and bool(supervisor["technician_by_card"])
    )
    by_step = {t["step"]: t for t in timeline}
    device_status = {
        "timeline": timeline,
        "host_fleet": _fleet(db_path, tid),
        "ok": by_step["paper out"]["devices"].get("printer") == ["now", "operator"]
        and by_step["dispenser jam"]["devices"].get("dispenser") == ["now", "engineer"]
        and by_step["jam cleared by the engineer"]["devices"].get("dispenser") == ["none", "none"]
        and by_step["paper changed"]["devices"].get("printer") == ["none", "none"],
    }
    return {"supervisor": supervisor, "device_status": device_status}, sessions


def replenisher_count(notes: NotePath) -> dict[int, tuple[int, int, int, int]]:
    """What a replenisher counts by hand, per cassette: (denomination, notes remaining,
    its notes in the reject bin, its notes in the retract bin), from the device's far side
    (the sim or the emulator behind a pty), not from what the terminal believes."""
    return {
        i: (slot.denomination, slot.count, notes.rejected[i], notes.retracted[i])
        for i, slot in sorted(notes.slots.items())
    }


def rebase_cash(opening: dict[str, int], terminal_id: str, exchange: dict[str, Any]) -> None:
    """The exchange moved the terminal's cash account by (new load - books): the demo's
    reconciliation of customer cash starts from the books as rebased by it."""
    account = f"GL-CASH-{terminal_id}"
    if account in opening:
        opening[account] += exchange["loaded"] - exchange["host_expected"]
