"""``atm soak``: N headless withdrawals against a real host process, with faults.

Faults are drawn from a seeded random source, so the same seed replays the same run.
Afterwards every account is checked: opening balance - closing balance - open holds must
equal the cash its cards received, as counted by the dispenser; cassette counts must
agree with what left them; no request may be posted twice; and the store-and-forward
queue must have drained.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from atm_common.clock import ManualClock
from atm_common.errors import AtmError
from sim.alarm_center import AlarmCenter, list_alarms
from sim.devices.key_injection import pinpad_options
from sim.host import db
from sim.host.ledger import Ledger, balance_of
from sim.scenarios.scripts import WITHDRAW, Customer, Scenario, apply
from sim.scenarios.seedgen import account_number, card_pan, card_pin, duress_pin, write_seed
from sim.services import read_listening, service_argv
from sim.soak.crash import SimulatedCrash, crash_after, kill
from sim.soak.proxy import FaultProxy
from terminal.app import Terminal
from terminal.config import HostConfig, TerminalConfig, Timeouts
from terminal.devices import Devices
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import Keys, Pin, SimPinPad
from terminal.ui import RecordingDisplay

log = logging.getLogger(__name__)

FAULTS = (
    "host_unreachable",
    "response_lost",
    "connection_reset",
    "mac_failure",
    "dispenser_jam",
    "pick_failure",
    "notes_not_taken",
    "terminal_killed",
    "host_killed",
    "alarm_center_down",
    "dispenser_error",
)
DEVICE_FAULTS = ("dispenser_jam", "pick_failure", "notes_not_taken", "dispenser_error")
CRASH_POINTS = (
    "pin_entered",
    "authorisation_request",
    "authorisation",
    "dispensing",
    "stacked",
    "cash_taken",
    "cash_retracted",
    "reversal",
    "card_returned",
)
AMOUNTS = (20, 40, 60, 100, 140, 200, 300)  # whole units
TERMINAL = "ATM00001"
OPENING_BALANCE = 100_000_000


class HostRunner:
    """``atm host`` in its own process, killable with SIGKILL and restartable."""

    def __init__(self, db_path: Path, seed: Path, log_path: Path, alarm_center: str) -> None:
        self.db_path, self.seed, self.log_path = db_path, seed, log_path
        self.alarm_center = alarm_center
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.restarts = 0

    def start(self) -> int:
        cmd = service_argv("host", "--db", str(self.db_path), "--seed", str(self.seed))
        cmd += ["--port", "0", "--log", str(self.log_path)]
        # alarms retried at most a second apart: an outage ends, delivery follows quickly
        cmd += ["--alarm-center", self.alarm_center, "--outbox-max-delay", "1"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        _, self.port = read_listening(self.process, "host")
        return self.port

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclasses.dataclass
class SoakReport:
    transactions: int
    faults: dict[str, int]
    discrepancies: int
    duplicate_postings: int
    saf_pending: int
    exception_queue: int
    seed: int
    outcomes: dict[str, int]
    cash_handed_out: int
    terminal_restarts: int
    host_restarts: int
    elapsed_s: float
    problems: list[str]
    duress_sessions: int = 0
    alarm_entries: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        keys = (
            "transactions",
            "faults",
            "discrepancies",
            "duplicate_postings",
            "saf_pending",
            "exception_queue",
            "seed",
        )
        return {k: getattr(self, k) for k in keys}


class Soak:
    def __init__(
        self,
        workdir: Path,
        transactions: int,
        seed: int,
        faults: tuple[str, ...],
        *,
        fault_rate: float = 0.3,
        cards: int = 100,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(
                f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})"
            )
        self.workdir, self.transactions, self.seed = workdir, transactions, seed
        self.faults, self.fault_rate, self.cards = faults, fault_rate, cards
        self.rng = random.Random(seed)
        self.clock = ManualClock(dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC))
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.dispensed: collections.Counter[str] = collections.Counter()
        self.terminal_restarts = 0
        self._index = 0
        self.alarm_counts: dict[str, int] = {}
        self.duress_sessions = 0
        self.center: AlarmCenter | None = None
        self.center_port = 0
        self.center_back_at: int | None = None  # transaction at which a down center returns

    # -- set-up --

    def _terminal(self, port: int, devices: Devices) -> Terminal:
        config = TerminalConfig(
            terminal_id=TERMINAL,
            journal=self.workdir / "journal.db",
            host=HostConfig(port=port, timeout=2.0, connect_timeout=2.0),
            timeouts=Timeouts(),
        )
        return Terminal(config, clock=self.clock, devices=devices, display=RecordingDisplay())

    def _devices(self, seed_path: Path) -> Devices:
        return Devices(
            card_reader=SimCardReader(self.clock),
            pinpad=SimPinPad(self.clock, **pinpad_options(seed_path, TERMINAL)),
            dispenser=SimDispenser(self.clock, cassettes=((2000, 100_000), (5000, 100_000))),
        )

    # -- the run --

    async def run(self) -> SoakReport:
        started = time.monotonic()
        seed_path = self.workdir / "soak-seed.toml"
        write_seed(seed_path, self.cards, (TERMINAL,), balance=OPENING_BALANCE, duress_every=5)
        self.center = AlarmCenter(self.workdir / "alarms.db")
        self.center_port = self.center.start()
        host = HostRunner(
            self.workdir / "host.db", seed_path, self.workdir / "host.log", self.center.url
        )
        host.start()
        proxy = FaultProxy(host.port)

        async def kill_host() -> None:
            host.kill()
            host.restarts += 1
            proxy.target_port = host.start()

        proxy.on_kill_host = kill_host
        proxy_port = await proxy.start()
        devices = self._devices(seed_path)
        terminal = self._terminal(proxy_port, devices)
        dispenser = devices.dispenser
        assert isinstance(dispenser, SimDispenser)
        try:
            if not terminal.start():
                raise AtmError(terminal.out_of_service_reason)
            for i in range(self.transactions):
                terminal = await self._one(i, terminal, devices, proxy, host)
            terminal = await self._settle(terminal, proxy, host)
            saf_pending = terminal.saf.pending
            exceptions = len(terminal.saf.entries("exception"))
            alarms = await self._deliver_alarms(host.db_path)
        finally:
            await terminal.close()
            await proxy.stop()
            host.stop()
            if self.center is not None:
                self.center.stop()
        problems = self._check(host.db_path, dispenser) + alarms
        return SoakReport(
            transactions=self.transactions,
            faults=dict(sorted(self.fault_counts.items())),
            discrepancies=sum(1 for p in problems if not p.startswith("duplicate")),
            duplicate_postings=sum(1 for p in problems if p.startswith("duplicate")),
            saf_pending=saf_pending,
            exception_queue=exceptions,
            seed=self.seed,
            outcomes=dict(sorted(self.outcomes.items())),
            cash_handed_out=dispenser.handed_out_amount,
            terminal_restarts=self.terminal_restarts,
            host_restarts=host.restarts,
            elapsed_s=round(time.monotonic() - started, 2),
            problems=problems,
            duress_sessions=self.duress_sessions,
            alarm_entries=dict(self.alarm_counts),
        )

    async def _one(
        self, i: int, terminal: Terminal, devices: Devices, proxy: FaultProxy, host: HostRunner
    ) -> Terminal:
        reader, pinpad, dispenser = devices.card_reader, devices.pinpad, devices.dispenser
        assert isinstance(reader, SimCardReader) and isinstance(pinpad, SimPinPad)
        assert isinstance(dispenser, SimDispenser)
        self._center_back(i)
        card_index = self.rng.randrange(self.cards)
        amount = self.rng.choice(AMOUNTS)
        pin = card_pin(card_index)
        if card_index % 5 == 0 and self.rng.random() < 0.3:  # a customer under threat
            pin = duress_pin(card_index)
            self.duress_sessions += 1
        fault = (
            self.rng.choice(self.faults)
            if self.faults and self.rng.random() < self.fault_rate
            else None
        )
        scenario = Scenario(f"t{i}", "", [Pin(pin), WITHDRAW, Keys(str(amount))], "")
        if fault == "notes_not_taken":
            scenario = dataclasses.replace(scenario, take_cash=False)
        disarm = self._arm(fault, terminal, dispenser, proxy)
        if fault in DEVICE_FAULTS:  # network faults count when they fire, crashes when hit
            self.fault_counts[fault] += 1
        if fault == "host_unreachable":
            await terminal.host.close()  # the next request must open a new connection
        card = CardData(pan=card_pan(card_index), expiry="3012")
        apply(scenario, Customer(reader, pinpad, dispenser), card)
        before = dispenser.handed_out_amount
        fired_before = len(proxy.fired)
        try:
            result = await terminal.serve_one()
            outcome = result.outcome if result else "not_served"
        except SimulatedCrash:
            outcome = "terminal_killed"
            self.fault_counts["terminal_killed"] += 1
            terminal = await self._restart(terminal, devices)
        finally:
            disarm()
        for name in proxy.fired[fired_before:]:
            self.fault_counts[_PROXY_NAMES[name]] += 1
        proxy.armed = None
        self.outcomes[outcome.split(":")[0]] += 1
        self.dispensed[account_number(card_index)] += dispenser.handed_out_amount - before
        pinpad.clear_script()
        if reader.card_present:
            reader.eject(0.0)
        if dispenser.status().value == "fault":
            dispenser.reset()  # the field engineer clears the jam
            terminal.check_devices()
        return terminal

    def _arm(
        self, fault: str | None, terminal: Terminal, dispenser: SimDispenser, proxy: FaultProxy
    ) -> Any:
        def nothing() -> None:
            return None

        responses = lambda body: body[:4] in (b"0110", b"0210")  # noqa: E731
        if fault == "host_unreachable":
            proxy.arm("unreachable")
        elif fault == "response_lost":
            proxy.arm("drop_response", lambda body: body.startswith(b"0210"))
        elif fault == "connection_reset":
            proxy.arm("reset_mid_request", lambda body: body[:4] in (b"0100", b"0200"))
        elif fault == "mac_failure":
            proxy.arm("corrupt_response", responses)
        elif fault == "host_killed":
            proxy.arm("kill_host", lambda body: body[:4] in (b"0100", b"0200"))
        elif fault == "dispenser_jam":
            dispenser.inject_jam(after_notes=self.rng.randrange(0, 4))
        elif fault == "pick_failure":
            dispenser.inject_pick_failure()
        elif fault == "dispenser_error":  # the device stops answering mid-way
            step = self.rng.choice(("dispense", "present"))
            dispenser.inject_device_error(step, after=self.rng.random() < 0.5)
        elif fault == "terminal_killed":
            return crash_after(terminal.journal, self.rng.choice(CRASH_POINTS))
        elif (
            fault == "alarm_center_down" and self.center is not None and self.center_back_at is None
        ):
            self.center.stop()  # alarms raised meanwhile must wait in the host's outbox
            self.center_back_at = self._index + self.rng.randint(5, 40)
            self.fault_counts["alarm_center_down"] += 1
        return nothing

    def _center_back(self, i: int) -> None:
        self._index = i
        if self.center_back_at is not None and i >= self.center_back_at:
            self.center = AlarmCenter(self.workdir / "alarms.db", port=self.center_port)
            self.center.start()
            self.center_back_at = None

    async def _deliver_alarms(self, db_path: Path) -> list[str]:
        """Center up again, then every alarm the host raised must reach it (30 s at most)."""
        self._center_back(self.transactions + 1_000_000)
        deadline = time.monotonic() + 30
        while True:
            conn = db.connect_readonly(db_path)
            try:
                rows = conn.execute(
                    "SELECT status, COUNT(*) FROM outbox WHERE kind = 'alarm' GROUP BY status"
                ).fetchall()
            finally:
                conn.close()
            counts = {status: n for status, n in rows}
            if not counts.get("pending") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.alarm_counts = counts
        lost = [
            f"alarm: {n} outbox entries {status}"
            for status, n in counts.items()
            if status != "delivered"
        ]
        stored = (
            len(list_alarms(self.workdir / "alarms.db"))
            if (self.workdir / "alarms.db").exists()
            else 0
        )
        opened = self._opened_alarms(db_path)
        if stored != opened:
            lost.append(f"alarm: {opened} incidents raised, {stored} at the alarm center")
        return lost

    @staticmethod
    def _opened_alarms(db_path: Path) -> int:
        conn = db.connect_readonly(db_path)
        try:
            (n,) = conn.execute("SELECT COUNT(*) FROM duress_alarms").fetchone()
        finally:
            conn.close()
        return int(n)

    async def _restart(self, terminal: Terminal, devices: Devices) -> Terminal:
        await kill(terminal)
        self.terminal_restarts += 1
        new = Terminal(terminal.config, clock=self.clock, devices=devices, display=terminal.display)
        new.start()
        return new

    async def _settle(self, terminal: Terminal, proxy: FaultProxy, host: HostRunner) -> Terminal:
        """Faults off; deliver everything still queued."""
        proxy.armed = None
        for _ in range(50):
            if not terminal.saf.pending:
                break
            await terminal.ensure_signed_on()
            await terminal.saf.drain(terminal.host, force=True)
            if terminal.saf.pending:
                self.clock.advance(60)
                await asyncio.sleep(0.05)
        return terminal

    # -- checks --

    def _check(self, db_path: Path, dispenser: SimDispenser) -> list[str]:
        conn = db.connect_readonly(db_path)
        problems: list[str] = []
        try:
            rows = {row["id"]: row for row in conn.execute("SELECT * FROM accounts")}
            for i in range(self.cards):
                number = account_number(i)
                row = rows[number]
                closing = balance_of(row).ledger
                holds = row["debits_pending"]
                got = self.dispensed[number]
                if OPENING_BALANCE - closing - holds != got:
                    problems.append(
                        f"account {number}: opening {OPENING_BALANCE} - closing {closing}"
                        f" - holds {holds} != dispensed {got}"
                    )
            cash = rows[f"GL-CASH-{TERMINAL}"]
            opening_cash = conn.execute(
                "SELECT SUM(amount) FROM transfers WHERE kind = 'opening' AND debit_account = ?",
                (f"GL-CASH-{TERMINAL}",),
            ).fetchone()[0]
            if opening_cash - balance_of(cash).ledger != dispenser.handed_out_amount:
                problems.append("terminal cash account does not match the cash handed out")
            moved = dispenser.initial_amount - dispenser.cassette_amount
            counted = dispenser.handed_out_amount + dispenser.retracted_amount
            counted += dispenser.rejected_amount + dispenser.stacked_amount
            if moved != counted:
                problems.append(f"cassettes: {moved} left them, {counted} accounted for")
            problems += [f"ledger: {p}" for p in Ledger(conn, self.clock).check()]
            problems += _duplicates(conn)
        finally:
            conn.close()
        return problems


_PROXY_NAMES = {
    "unreachable": "host_unreachable",
    "drop_response": "response_lost",
    "reset_mid_request": "connection_reset",
    "corrupt_response": "mac_failure",
    "kill_host": "host_killed",
}


def _duplicates(conn: sqlite3.Connection) -> list[str]:
    out = []
    twice = conn.execute(
        "SELECT reverses_id FROM transfers WHERE reverses_id IS NOT NULL"
        " GROUP BY reverses_id HAVING COUNT(*) > 1"
    ).fetchall()
    out += [f"duplicate: transfer {r[0]} reversed more than once" for r in twice]
    over = conn.execute(
        "SELECT o.id FROM transfers o JOIN transfers r ON r.reverses_id = o.id"
        " GROUP BY o.id HAVING SUM(r.amount) > MAX(o.amount)"
    ).fetchall()
    out += [f"duplicate: transfer {r[0]} refunded beyond its amount" for r in over]
    unpaired = conn.execute(
        "SELECT t.id FROM transfers t WHERE t.kind = 'withdrawal'"
        " AND (SELECT COUNT(*) FROM requests q WHERE q.transfer_id = t.id) != 1"
    ).fetchall()
    out += [f"duplicate: withdrawal {r[0]} not tied to exactly one request" for r in unpaired]
    return out


def run_soak(
    workdir: Path, transactions: int, seed: int, faults: tuple[str, ...], **kw: Any
) -> SoakReport:
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.db*"):
        stale.unlink()
    with contextlib.suppress(FileNotFoundError):
        (workdir / "host.log").unlink()
    return asyncio.run(Soak(workdir, transactions, seed, faults, **kw).run())
