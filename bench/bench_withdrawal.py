"""Benchmark: complete headless cash withdrawals per second through the whole stack.

What is measured: one customer session at a time, from card inserted to card taken, on
the real :class:`terminal.app.Terminal` (state machine, durable SQLite journal, asyncio
host client) with simulated card reader, PIN pad and dispenser on a ``ManualClock``,
against a real ``atm host`` subprocess over loopback TCP (ISO 8583, SQLite ledger in WAL
with ``synchronous=FULL``). The scripted customer enters the PIN, presses F1
(withdrawal) and types an amount; the session makes two host round trips (0100 PIN
check / balance, 0200 withdrawal) and ends with cash and card taken.

The bank is a seed generated from ``sim/data/demo-seed.toml`` (same keys and terminal
ATM00001) with many cards on large balances and daily limits, so no session declines.

Reported: sessions/s, p50/p99 session latency, CPU time per session of the terminal
(this process) and the host process, the terminal's SQLite commits per session (journal,
store-and-forward queue and STAN counter, counted by SQLite trace callbacks on their
connections: a write outside a transaction or a COMMIT), how many of them were fsynced
(``synchronous=FULL``; see docs/durability.md), the journal records per session, and,
measured in the same run, the ratios against ``bench/baselines/echo.py`` (loopback round
trip, N=1) and ``sqlite_commit.py`` (``synchronous=FULL`` commit rate).
Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from _common import (
    DEFAULT_BASELINE_DIR,
    percentile,
    process_cpu_seconds,
    progress,
    run_baseline,
)

from atm_common.clock import ManualClock
from sim.devices.key_injection import pinpad_options
from sim.scenarios.demo import (
    TERMINAL_ID,
    host_process,
    ledger_problems,
    ledger_snapshot,
    seed_cards,
)
from sim.scenarios.scripts import WITHDRAW, Customer, Scenario, apply
from sim.scenarios.seedgen import card_name as bench_card_name
from sim.scenarios.seedgen import card_pin as bench_pin
from sim.scenarios.seedgen import write_seed
from terminal.app import Terminal
from terminal.config import HostConfig, TerminalConfig
from terminal.devices import Devices
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import Keys, Pin, SimPinPad
from terminal.ui import RecordingDisplay

NOTE = 2000  # the dispenser's single denomination, minor units


def bench_terminal(workdir: Path, port: int, seed: Path, clock: ManualClock) -> Terminal:
    """Like ``sim.scenarios.demo.demo_terminal``, with a dispenser that never runs dry."""
    config = TerminalConfig(
        terminal_id=TERMINAL_ID,
        location="Main Street branch",
        journal=workdir / "journal.db",
        host=HostConfig(port=port, timeout=10.0, plain=True),
    )
    devices = Devices(
        card_reader=SimCardReader(clock),
        pinpad=SimPinPad(clock, **pinpad_options(seed, TERMINAL_ID)),
        dispenser=SimDispenser(clock, cassettes=((NOTE, 10_000_000),)),
    )
    return Terminal(config, clock=clock, devices=devices, display=RecordingDisplay())


class CommitCounter:
    """Counts the commits SQLite makes on named connections, from its statement trace.

    A statement that writes while no transaction is open commits on its own (autocommit);
    a COMMIT ends a transaction. The callback runs as each statement starts, before SQLite
    opens an implicit transaction for it, so ``in_transaction`` says which case it is.
    A commit is fsynced when the connection's ``synchronous`` is FULL or EXTRA at that
    moment (in WAL mode a NORMAL commit is not); ``PRAGMA synchronous`` changes are traced.
    """

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
    LEVELS: ClassVar[dict[str, int]] = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}

    def __init__(self, connections: dict[str, sqlite3.Connection]) -> None:
        self.commits = dict.fromkeys(connections, 0)
        self.fsynced = dict.fromkeys(connections, 0)
        for name, conn in connections.items():
            (level,) = conn.execute("PRAGMA synchronous").fetchone()
            conn.set_trace_callback(self._callback(name, conn, int(level)))

    def _callback(self, name: str, conn: sqlite3.Connection, level: int) -> Any:
        synchronous = {"level": level}

        def traced(statement: str) -> None:
            words = statement.replace("=", " = ").split()
            verb = words[0].upper() if words else ""
            if verb == "PRAGMA" and len(words) >= 4 and words[1].lower() == "synchronous":
                value = words[3].upper()
                synchronous["level"] = int(value) if value.isdigit() else self.LEVELS[value]
            elif verb in ("COMMIT", "END") or (verb in self.WRITES and not conn.in_transaction):
                self.commits[name] += 1
                self.fsynced[name] += synchronous["level"] >= self.LEVELS["FULL"]

        return traced

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"commits": dict(self.commits), "fsynced": dict(self.fsynced)}


def terminal_connections(terminal: Terminal) -> dict[str, sqlite3.Connection]:
    """The terminal's three SQLite files (the bench looks inside; nothing else does)."""
    return {
        "journal": terminal.journal._conn,
        "saf": terminal.saf._conn,
        "counters": terminal.stan._conn,
    }


def journal_rows(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM journal").fetchone()
        return int(count)
    finally:
        conn.close()


@dataclasses.dataclass
class RunResult:
    latencies: list[float]
    elapsed: float
    terminal_cpu: float
    host_cpu: float | None
    journal_records: int
    commits: dict[str, dict[str, int]]
    outcomes: dict[str, int]
    dispensed: int
    ledger_problems: list[str]
    accounts_debited: int


async def run_withdrawals(args: argparse.Namespace, workdir: Path) -> RunResult:
    seed = workdir / "bench-seed.toml"
    write_seed(seed, args.cards)
    cards: list[tuple[CardData, str]] = []
    pins: list[str] = []
    by_pan = seed_cards(seed)
    for i in range(args.cards):
        card, account = by_pan[bench_card_name(i)]
        cards.append((card, account))
        pins.append(bench_pin(i))
    # plain TCP: comparable with the recorded baseline (before the link had TLS)
    with host_process(workdir / "host.db", seed, workdir / "host.log", demo=True, pki=None) as host:
        progress(f"host pid {host.process.pid} on {host.address}:{host.port}")
        opening = ledger_snapshot(host.db_path)
        clock = ManualClock(dt.datetime.now(dt.UTC))
        terminal = bench_terminal(workdir, host.port, seed, clock)
        if not terminal.start() or not await terminal.ensure_signed_on():
            raise SystemExit(f"terminal did not go in service: {terminal.out_of_service_reason}")
        commit_counter = CommitCounter(terminal_connections(terminal))
        devices = terminal.devices
        reader, pinpad, dispenser = devices.card_reader, devices.pinpad, devices.dispenser
        assert isinstance(reader, SimCardReader) and isinstance(pinpad, SimPinPad)
        assert isinstance(dispenser, SimDispenser)
        amount_keys = Keys(str(args.amount))
        outcomes: dict[str, int] = {}
        latencies: list[float] = []

        async def one(index: int) -> str:
            card, _ = cards[index % len(cards)]
            pin = pins[index % len(cards)]
            scenario = Scenario(
                "bench withdrawal",
                card.pan,
                [Pin(pin), WITHDRAW, amount_keys],
                "dispensed",
                args.amount * 100,
            )
            apply(scenario, Customer(reader, pinpad, dispenser), card)
            result = await terminal.serve_one()
            return result.outcome if result else f"no session ({terminal.out_of_service_reason})"

        try:
            progress(f"warm-up: {args.warmup} sessions")
            for i in range(args.warmup):
                outcome = await one(i)
                if outcome != "dispensed":
                    raise SystemExit(f"warm-up session {i} ended {outcome!r}, not 'dispensed'")
            records_before = journal_rows(workdir / "journal.db")
            commits_before = commit_counter.snapshot()
            host_cpu0 = process_cpu_seconds(host.process.pid)
            cpu0 = time.process_time()
            start = time.perf_counter()
            deadline = start + args.max_seconds
            next_report = start + 1.0
            i = 0
            while i < args.sessions and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                outcome = await one(args.warmup + i)
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                i += 1
                if t1 >= next_report:
                    rate = i / (t1 - start)
                    progress(f"  {i}/{args.sessions} sessions, {rate:.0f}/s")
                    next_report = t1 + 1.0
            elapsed = time.perf_counter() - start
            terminal_cpu = time.process_time() - cpu0
            host_cpu1 = process_cpu_seconds(host.process.pid)
            host_cpu = None if host_cpu0 is None or host_cpu1 is None else host_cpu1 - host_cpu0
            commits_after = commit_counter.snapshot()
        finally:
            await terminal.close()
        records = journal_rows(workdir / "journal.db") - records_before
        closing = ledger_snapshot(host.db_path)
        problems = ledger_problems(host.db_path)
        debited = sum(opening[a] - closing[a] for _, a in cards)
        expected_total = (args.warmup + len(latencies)) * args.amount * 100
        if debited != expected_total and outcomes.get("dispensed") == len(latencies):
            problems.append(f"accounts debited {debited}, expected {expected_total}")
        return RunResult(
            latencies=latencies,
            elapsed=elapsed,
            terminal_cpu=terminal_cpu,
            host_cpu=host_cpu,
            journal_records=records,
            commits={
                kind: {k: v - commits_before[kind][k] for k, v in after.items()}
                for kind, after in commits_after.items()
            },
            outcomes=outcomes,
            dispensed=dispenser.handed_out_amount,
            ledger_problems=problems,
            accounts_debited=debited,
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=500, help="timed sessions (at most)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap, timed part")
    parser.add_argument("--warmup", type=int, default=20, help="untimed sessions first")
    parser.add_argument("--cards", type=int, default=50, help="cards used round-robin")
    parser.add_argument("--amount", type=int, default=20, help="whole currency units")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="parent of the temp dir")
    parser.add_argument(
        "--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR, help="baseline scripts"
    )
    parser.add_argument("--echo-duration", type=float, default=1.0, help="echo.py seconds")
    parser.add_argument("--sqlite-seconds", type=float, default=1.0, help="sqlite_commit.py s")
    parser.add_argument("--skip-baselines", action="store_true", help="no ratios (dev only)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.cards < 1 or args.warmup < 0 or args.max_seconds <= 0:
        parser.error("need --sessions >= 1, --cards >= 1, --warmup >= 0, --max-seconds > 0")
    if args.amount < 1 or (args.amount * 100) % NOTE:
        parser.error(f"--amount must be a positive multiple of {NOTE // 100}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    baselines: dict[str, Any] = {}
    if not args.skip_baselines:
        baselines["echo"] = run_baseline(
            args.baseline_dir,
            "echo.py",
            "--clients",
            "1",
            "--duration",
            str(args.echo_duration),
            "--warmup",
            "0.3",
        )
        baselines["sqlite"] = run_baseline(
            args.baseline_dir,
            "sqlite_commit.py",
            "--seconds",
            str(args.sqlite_seconds),
            "--dir",
            args.dir,
        )
    with tempfile.TemporaryDirectory(prefix="atm-bench-wd-", dir=args.dir) as tmp:
        progress(f"withdrawals: up to {args.sessions} sessions / {args.max_seconds:.0f} s")
        run = asyncio.run(run_withdrawals(args, Path(tmp)))

    n = len(run.latencies)
    lat_us = [x * 1e6 for x in run.latencies]
    mean_us = run.elapsed / n * 1e6
    report: dict[str, Any] = {
        "name": "bench_withdrawal_end_to_end",
        "sessions": n,
        "warmup_sessions": args.warmup,
        "cards": args.cards,
        "amount_minor": args.amount * 100,
        "elapsed_s": round(run.elapsed, 3),
        "sessions_per_s": round(n / run.elapsed, 1),
        "mean_us": round(mean_us, 1),
        "p50_us": round(percentile(lat_us, 50), 1),
        "p99_us": round(percentile(lat_us, 99), 1),
        "max_us": round(max(lat_us), 1),
        "stdev_us": round(statistics.pstdev(lat_us), 1),
        "host_round_trips_per_session": 2,
        "terminal_cpu_us_per_session": round(run.terminal_cpu / n * 1e6, 1),
        "host_cpu_us_per_session": (
            None if run.host_cpu is None else round(run.host_cpu / n * 1e6, 1)
        ),
        "journal_records_per_session": round(run.journal_records / n, 2),
        "terminal_commits_per_session": round(sum(run.commits["commits"].values()) / n, 2),
        "terminal_fsynced_commits_per_session": round(sum(run.commits["fsynced"].values()) / n, 2),
        "terminal_commits_per_session_by_file": {
            kind: {k: round(v / n, 2) for k, v in counts.items()}
            for kind, counts in run.commits.items()
        },
        "host_commits_per_session": 2,
        "outcomes": run.outcomes,
        "all_dispensed": run.outcomes.get("dispensed", 0) == n,
        "ledger_problems": run.ledger_problems,
        "ledger_ok": not run.ledger_problems,
    }
    ok = report["all_dispensed"] and report["ledger_ok"]
    # the fsynced ones: what the FULL commit rate of the baseline prices
    commits = report["terminal_fsynced_commits_per_session"] + report["host_commits_per_session"]
    if baselines:
        echo = baselines["echo"]["results"]["1"]
        echo_rtt_us = 1e6 / echo["rps"]
        full = baselines["sqlite"]["results"]["full"]
        commit_floor_us = commits * 1e6 / full["commits_per_s"]
        report["baseline"] = {
            "echo_n1_rps": echo["rps"],
            "echo_n1_round_trip_us": round(echo_rtt_us, 1),
            "echo_n1_p50_us": echo["p50_us"],
            "sqlite_full_commits_per_s": full["commits_per_s"],
            "sqlite_full_p50_us": full["p50_us"],
            "sqlite_fs": baselines["sqlite"].get("fs"),
        }
        report["ratios"] = {
            # per-session time over one loopback echo round trip, and over the two a
            # session needs: how far a session is above the bare network floor
            "session_vs_echo_round_trip": round(mean_us / echo_rtt_us, 2),
            "session_vs_2_echo_round_trips": round(mean_us / (2 * echo_rtt_us), 2),
            "p50_vs_2_echo_p50": round(report["p50_us"] / (2 * echo["p50_us"]), 2),
            # sessions/s as a fraction of the FULL commit rate, and per-session time over
            # the time its durable commits (journal + host) alone take at that rate
            "sessions_per_s_vs_full_commits_per_s": round(
                report["sessions_per_s"] / full["commits_per_s"], 4
            ),
            "session_vs_its_commits_at_full_rate": round(mean_us / commit_floor_us, 2),
        }
    report["ok"] = ok
    progress(
        f"{n} sessions in {run.elapsed:.2f} s: {report['sessions_per_s']}/s,"
        f" p50 {report['p50_us'] / 1000:.2f} ms, p99 {report['p99_us'] / 1000:.2f} ms"
    )
    if "ratios" in report:
        r = report["ratios"]
        progress(
            f"  {r['session_vs_2_echo_round_trips']}x two echo round trips;"
            f" {r['session_vs_its_commits_at_full_rate']}x the time of its"
            f" {commits:.1f} FULL commits"
        )
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
