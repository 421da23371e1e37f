"""The headless demo: a real host process over TCP, a terminal on simulated devices,
scripted customers, then reconciliation of every account against the cash handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sim.host import db
from sim.host.ledger import Ledger, balance_of
from sim.host.seed import read_toml
from sim.scenarios.keys import pinpad_options, terminal_for
from sim.scenarios.scripts import DEMO, Scenario, apply
from terminal.app import Terminal
from terminal.clock import ManualClock
from terminal.config import HostConfig, TerminalConfig
from terminal.devices import Devices
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import SimPinPad
from terminal.errors import TerminalError
from terminal.ui import RecordingDisplay

log = logging.getLogger(__name__)

DEMO_SEED = Path(__file__).resolve().parent.parent / "data" / "demo-seed.toml"
TERMINAL_ID = "ATM00001"


@dataclasses.dataclass
class HostProcess:
    process: subprocess.Popen[str]
    address: str
    port: int
    db_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def host_process(db_path: Path, seed: Path, log_path: Path | None = None) -> Iterator[HostProcess]:
    """Run ``atm host`` as its own process on a free port; stop it on exit."""
    cmd = [sys.executable, "-m", "terminal.cli", "host", "--db", str(db_path), "--seed", str(seed)]
    cmd += ["--port", "0"]
    if log_path is not None:
        cmd += ["--log", str(log_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # stderr to a file, never an unread pipe: a chatty host would block once it filled
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        handle: HostProcess | None = None
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("listening on "):
                proc.wait(timeout=10)
                errors.seek(0)
                raise TerminalError(f"host did not start: {line.strip()} {errors.read().strip()}")
            address, _, port = line.split()[-1].rpartition(":")
            handle = HostProcess(proc, address, int(port), db_path)
            yield handle
        finally:
            if handle is not None:
                handle.stop()
            elif proc.poll() is None:
                proc.kill()
                proc.wait()


def seed_cards(seed: Path) -> dict[str, tuple[CardData, str]]:
    """Cards by holder name and by PAN -> (card data, first account)."""
    out: dict[str, tuple[CardData, str]] = {}
    for row in read_toml(seed).get("cards", []):
        card = CardData(pan=row["pan"], expiry=row["expiry"], name=row.get("name", ""))
        card = dataclasses.replace(card, track2=f"{card.pan}={card.expiry}201")
        entry = (card, row["accounts"][0])
        out.setdefault(card.name, entry)
        out[card.pan] = entry
    return out


def ledger_snapshot(db_path: Path) -> dict[str, int]:
    conn = db.connect_readonly(db_path)
    try:
        return {row["id"]: balance_of(row).ledger for row in conn.execute("SELECT * FROM accounts")}
    finally:
        conn.close()


def ledger_problems(db_path: Path) -> list[str]:
    conn = db.connect_readonly(db_path)
    try:
        return Ledger(conn, ManualClock()).check()
    finally:
        conn.close()


async def run_sessions(
    terminal: Terminal, scenarios: Sequence[Scenario], cards: dict[str, tuple[CardData, str]]
) -> list[dict[str, Any]]:
    devices = terminal.devices
    reader, pinpad, dispenser = devices.card_reader, devices.pinpad, devices.dispenser
    assert isinstance(reader, SimCardReader) and isinstance(pinpad, SimPinPad)
    assert isinstance(dispenser, SimDispenser)
    results = []
    for scenario in scenarios:
        card, account = cards[scenario.card]
        apply(scenario, reader, pinpad, dispenser, card)
        before = dispenser.handed_out_amount
        result = await terminal.serve_one()
        handed = dispenser.handed_out_amount - before
        outcome = result.outcome if result else f"no session ({terminal.out_of_service_reason})"
        leftover = pinpad.pending()
        ok = (
            outcome == scenario.expected
            and handed == scenario.expected_dispensed
            and (result is None or result.dispensed == handed)
            and leftover == 0
        )
        results.append(
            {
                "name": scenario.name,
                "outcome": outcome,
                "expected": scenario.expected,
                "ok": ok,
                "states": result.states if result else [],
                "dispensed": handed,
                "account": account,
                "card": card.masked_pan,
                "unused_inputs": leftover,
            }
        )
        pinpad.clear_script()  # inputs the session never asked for must not leak into the next
    return results


def reconcile(
    opening: dict[str, int],
    closing: dict[str, int],
    sessions: list[dict[str, Any]],
    handed_out: int,
    terminal_id: str = TERMINAL_ID,
) -> tuple[bool, list[dict[str, Any]]]:
    """Every account's balance change must equal minus the cash its cards received."""
    dispensed: dict[str, int] = {}
    for s in sessions:
        dispensed[s["account"]] = dispensed.get(s["account"], 0) + s["dispensed"]
    rows, ok = [], True
    for account in sorted(closing):
        change = closing[account] - opening.get(account, 0)
        if account.startswith("GL-CASH-"):
            expected = -handed_out if account == f"GL-CASH-{terminal_id}" else 0
        elif account.startswith("GL-"):
            continue
        else:
            expected = -dispensed.get(account, 0)
        good = change == expected
        ok &= good
        rows.append(
            {
                "account": account,
                "opening": opening.get(account, 0),
                "closing": closing[account],
                "change": change,
                "expected_change": expected,
                "ok": good,
            }
        )
    return ok, rows


def demo_terminal(
    workdir: Path, port: int, seed: Path, clock: ManualClock, terminal_id: str = TERMINAL_ID
) -> Terminal:
    config = TerminalConfig(
        terminal_id=terminal_id,
        location="Main Street branch",
        journal=workdir / "journal.db",
        host=HostConfig(port=port, timeout=10.0),
    )
    devices = Devices(
        card_reader=SimCardReader(clock),
        pinpad=SimPinPad(clock, **pinpad_options(seed, terminal_id)),
        dispenser=SimDispenser(clock, cassettes=((2000, 200), (5000, 100))),
    )
    return Terminal(config, clock=clock, devices=devices, display=RecordingDisplay())


async def run_demo(
    workdir: Path | None = None, scenarios: Sequence[Scenario] = DEMO, security: str = "tdes"
) -> dict[str, Any]:
    """Run the whole demo; returns the report that ``atm demo --json`` prints."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="atm-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        host = stack.enter_context(
            host_process(workdir / "host.db", DEMO_SEED, workdir / "host.log")
        )
        opening = ledger_snapshot(host.db_path)
        clock = ManualClock(dt.datetime.now(dt.UTC))
        terminal_id = terminal_for(DEMO_SEED, security)
        terminal = demo_terminal(workdir, host.port, DEMO_SEED, clock, terminal_id)
        if not terminal.start():
            raise TerminalError(f"terminal did not go in service: {terminal.out_of_service_reason}")
        try:
            sessions = await run_sessions(terminal, scenarios, seed_cards(DEMO_SEED))
        finally:
            await terminal.close()
        closing = ledger_snapshot(host.db_path)
        dispenser = terminal.devices.dispenser
        assert isinstance(dispenser, SimDispenser)
        reconciled, accounts = reconcile(
            opening, closing, sessions, dispenser.handed_out_amount, terminal_id
        )
        problems = ledger_problems(host.db_path)
        return {
            "terminal_id": terminal_id,
            "security": terminal.security_mode,
            "sessions": sessions,
            "reconciled": reconciled and not problems,
            "outcomes_as_expected": all(s["ok"] for s in sessions),
            "ledger_problems": problems,
            "cash_handed_out": dispenser.handed_out_amount,
            "accounts": accounts,
        }


def main(workdir: Path | None = None, security: str = "tdes") -> dict[str, Any]:
    return asyncio.run(run_demo(workdir, security=security))
