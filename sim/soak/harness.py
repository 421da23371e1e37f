"""``atm soak``: N headless withdrawals against a real host process, with faults.

Faults are drawn from a seeded random source, so the same seed replays the same run.
Afterwards every account is checked: opening balance - closing balance - open holds must
equal the cash its cards received, as counted by the dispenser; cassette counts must
agree with what left them; no request may be posted twice; and the store-and-forward
queue must have drained.

This module is the session loop: it sets up the bank (:mod:`sim.soak.host_runner`, the
alarm center), the terminal and its simulated devices, then plays one customer after
another through the terminal while the fault plan (:mod:`sim.soak.faults`) strikes,
restarts what was killed, and finally hands the leftovers to the checks
(:mod:`sim.soak.checks`) for a :class:`~sim.soak.report.SoakReport`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

from atm_common.clock import ManualClock
from atm_common.errors import AtmError
from atm_common.files import private_dir
from atm_common.progress import Progress
from atm_common.tls import client_context, server_context
from sim.devices.key_injection import pinpad_options
from sim.pki import make_pki
from sim.scenarios.scripts import WITHDRAW, Customer, Scenario, apply
from sim.scenarios.seedgen import (
    account_number,
    card_pan,
    card_pin,
    duress_pin,
    joint_account_number,
    joint_card_pan,
    write_seed,
)
from sim.service_auth import load_host_key, new_host_key_file
from sim.soak.checks import check_alarms, check_money
from sim.soak.crash import SimulatedCrash, kill
from sim.soak.faults import FAULTS, FaultPlan, FlakyAlarmCenter
from sim.soak.host_runner import HostRunner
from sim.soak.joint import APPROVAL_SECONDS, JOINT_SHARE, SoakPhones, joint_scenario
from sim.soak.proxy import FaultProxy
from sim.soak.report import SoakReport, count_problems
from terminal.app import Terminal
from terminal.config import HostConfig, TerminalConfig, Timeouts
from terminal.devices import Devices
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import Keys, Pin, SimPinPad
from terminal.ui import RecordingDisplay

__all__ = ["FAULTS", "Soak", "SoakReport", "run_soak"]

AMOUNTS = (20, 40, 60, 100, 140, 200, 300)  # whole units
TERMINAL = "ATM00001"
OPENING_BALANCE = 100_000_000


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
        joint_accounts: int = 3,
        progress: Progress | None = None,
        db: str | None = None,
        host_workers: int = 1,
    ) -> None:
        """``db``: the host's ledger as a PostgreSQL URL (a fresh database); None: an
        SQLite file in ``workdir``. ``host_workers``: host processes (``--workers``)."""
        self.progress = progress or Progress("soak", enabled=False)  # atm soak on a terminal
        self.db: Path | str = db or workdir / "host.db"
        self.host_workers = host_workers
        self.rng = random.Random(seed)
        self.plan = FaultPlan(faults, self.rng, fault_rate)  # refuses unknown faults
        self.workdir, self.transactions, self.seed = workdir, transactions, seed
        self.cards = cards
        self.joint_accounts = joint_accounts  # generated joint accounts (sim/soak/joint.py)
        self.phones: SoakPhones | None = None
        self.clock = ManualClock(dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC))
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.dispensed: collections.Counter[str] = collections.Counter()
        self.terminal_restarts = 0
        self.alarm_counts: dict[str, int] = {}
        self.duress_sessions = 0
        # this run's signing key: the host signs its alarms, the center checks them
        self.host_key_file = new_host_key_file(workdir / "host.key")
        # the ISO link is mutual TLS, as in the field: this run's own CA
        self.pki = make_pki(workdir / "pki", [TERMINAL])
        # the alarm link too: the center wants the host's certificate from that CA
        self.center = FlakyAlarmCenter(
            workdir / "alarms.db",
            load_host_key(self.host_key_file),
            server_context(self.pki.service("alarm-center")),
        )

    # -- set-up --

    def _terminal(self, port: int, devices: Devices) -> Terminal:
        config = TerminalConfig(
            terminal_id=TERMINAL,
            journal=self.workdir / "journal.db",
            host=HostConfig(
                port=port, timeout=2.0, connect_timeout=2.0, tls=self.pki.terminal(TERMINAL)
            ),
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
        write_seed(
            seed_path,
            self.cards,
            (TERMINAL,),
            balance=OPENING_BALANCE,
            duress_every=5,
            joint=self.joint_accounts,
            approval_seconds=APPROVAL_SECONDS,
        )
        host = HostRunner(
            self.db,
            seed_path,
            self.workdir / "host.log",
            self.center.start(),
            self.host_key_file,
            tls_dir=self.pki.directory,
            api=bool(self.joint_accounts),
            workers=self.host_workers,
        )
        host.start()
        if self.joint_accounts:
            self.phones = SoakPhones(lambda: host.api_url, self.pki.ca)
            self.phones.start()
        # the proxy is the network: it ends TLS on both sides to frame (and fault) messages
        proxy = FaultProxy(
            host.port,
            server_ssl=server_context(self.pki.service("host")),
            client_ssl=client_context(self.pki.terminal(TERMINAL)),
        )

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
                self.progress.advance()
            self.progress.step("settling, delivering alarms, checking the money")
            terminal = await self._settle(terminal, proxy, host)
            saf_pending = terminal.saf.pending
            exceptions = len(terminal.saf.entries("exception"))
            alarms = await self._deliver_alarms(host.db_path)
        finally:
            if self.phones is not None:
                self.phones.stop()
            await terminal.close()
            await proxy.stop()
            host.stop()
            self.center.stop()
        problems = check_money(
            host.db_path,
            dispenser,
            self.dispensed,
            cards=self.cards,
            opening_balance=OPENING_BALANCE,
            terminal_id=TERMINAL,
            clock=self.clock,
            extra_accounts=[joint_account_number(j) for j in range(self.joint_accounts)],
        )
        problems += alarms
        discrepancies, duplicate_postings = count_problems(problems)
        return SoakReport(
            transactions=self.transactions,
            faults=dict(sorted(self.plan.counts.items())),
            discrepancies=discrepancies,
            duplicate_postings=duplicate_postings,
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
        self.center.tick(i)
        card_index = self.rng.randrange(self.cards)
        amount = self.rng.choice(AMOUNTS)
        pin = card_pin(card_index)
        if card_index % 5 == 0 and self.rng.random() < 0.3:  # a customer under threat
            pin = duress_pin(card_index)
            self.duress_sessions += 1
        fault = self.plan.draw()
        scenario = Scenario(f"t{i}", "", [Pin(pin), WITHDRAW, Keys(str(amount))], "")
        account, card = (
            account_number(card_index),
            CardData(pan=card_pan(card_index), expiry="3012"),
        )
        joint = self.phones is not None and (
            fault == "approval_never_comes" or self.rng.random() < JOINT_SHARE
        )
        if joint and self.phones is not None:
            j, owner = self.rng.randrange(self.joint_accounts), self.rng.randrange(3)
            scenario = joint_scenario(i, j, owner, amount)
            account = joint_account_number(j)
            card = CardData(pan=joint_card_pan(j, owner), expiry="3012")
            if pin != card_pin(card_index):
                self.duress_sessions -= 1  # drawn for the card this session does not use
            silent = fault == "approval_never_comes"
            self.phones.watch(j, owner, silent)
            if silent:
                self.plan.counts["approval_never_comes"] += 1
        if fault == "notes_not_taken":
            scenario = dataclasses.replace(scenario, take_cash=False)
        disarm = self.plan.arm(fault, terminal, dispenser, proxy, self.center)
        self.plan.count_armed(fault)
        if fault == "host_unreachable":
            await terminal.host.close()  # the next request must open a new connection
        apply(scenario, Customer(reader, pinpad, dispenser), card)
        before = dispenser.handed_out_amount
        fired_before = len(proxy.fired)
        try:
            result = await terminal.serve_one()
            outcome = result.outcome if result else "not_served"
        except SimulatedCrash:
            outcome = "terminal_killed"
            self.plan.counts["terminal_killed"] += 1
            terminal = await self._restart(terminal, devices)
        finally:
            disarm()
            if self.phones is not None:
                self.phones.unwatch()
        self.plan.count_fired(proxy.fired[fired_before:])
        proxy.armed = None
        self.outcomes[outcome.split(":")[0]] += 1
        self.dispensed[account] += dispenser.handed_out_amount - before
        pinpad.clear_script()
        if reader.card_present:
            reader.eject(0.0)
        if dispenser.status().value == "fault":
            dispenser.reset()  # the field engineer clears the jam
            terminal.check_devices()
        return terminal

    async def _deliver_alarms(self, db_path: Path | str) -> list[str]:
        """Center up again, then every alarm the host raised must reach it (30 s at most)."""
        self.center.tick(self.transactions + 1_000_000)
        self.alarm_counts, problems = await check_alarms(db_path, self.workdir / "alarms.db")
        return problems

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


def run_soak(
    workdir: Path, transactions: int, seed: int, faults: tuple[str, ...], **kw: Any
) -> SoakReport:
    private_dir(workdir)  # host db, journal, SAF, logs, the generated seed: 0700
    for stale in workdir.glob("*.db*"):
        stale.unlink()
    with contextlib.suppress(FileNotFoundError):
        (workdir / "host.log").unlink()
    return asyncio.run(Soak(workdir, transactions, seed, faults, **kw).run())
