"""Benchmark: bank host authorisations per second, 1 to 1,000 terminals, SQLite and
PostgreSQL, one and two host processes, and the host's cost against its history.

What is measured: the host simulator (``atm host``, its own process(es): asyncio TCP
server, ISO 8583 codec, MAC check and MAC, PIN verification, idempotency record and
ledger posting, durably committed; requests arriving together share one commit, see
``sim/host/group_commit.py``) driven over real loopback TCP by N concurrent
:class:`host_link.client.HostClient` connections in this process. Each connection is its
own terminal (distinct terminal id and PIN key from a generated seed, so STANs never
collide) and sends requests back to back, one outstanding at a time: 0200 cash
withdrawals and/or 0100 balance inquiries, each with a real PIN block, on cards with
balances and limits that never decline. For each kind and N, after a warm-up, requests
started in the next ``--duration`` seconds are counted and timed (the method of
``baselines/echo.py``).

Configurations (``--configs``): ``sqlite`` (the embedded default, ``synchronous=FULL``),
``sqlite-2proc`` (``--workers 2``: two processes on one port and file), ``postgresql``
and ``postgresql-2proc`` (a private PostgreSQL 15 cluster started for the run, fsync on),
and ``sqlite-commit-each`` (``--group-commit 1``: one commit per request, the host as it
was before group commit: the baseline of the group commit, in the same run).

Reported per configuration, kind and N: requests/s, p50/p99 latency, CPU per request of
the host's processes (and of the PostgreSQL server's), and, measured in the same run,
ratios against ``bench/baselines/``: ``echo.py`` at the same N (loopback limit),
``codec.py`` (pyiso8583 0200 round trip) and ``sqlite_commit.py``. Then
``bench_host_history.run_size``: host CPU per 0200 in process on a ledger seeded with
``--history`` transfers (10^3 and 10^6 by default). Progress goes to stderr; the last
stdout line is one JSON object whose headline keys are ``echo_rps``, ``codec_us``,
``rps``, ``p99_ms``, ``host_cpu_us``, ``host_cpu_us_by_history`` and ``targets``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_BASELINE_DIR,
    percentile,
    process_cpu_seconds,
    progress,
    run_baseline,
)
from bench_host_history import run_size

from host_link.client import HostClient, StanSequence
from host_link.codec import Message
from sim.host.storage.cluster import PgCluster
from sim.scenarios import link as link_module
from sim.scenarios.link import TerminalLink
from sim.scenarios.seedgen import card_pan as bench_pan
from sim.scenarios.seedgen import card_pin as bench_pin
from sim.scenarios.seedgen import terminal_id as bench_terminal_id
from sim.scenarios.seedgen import write_seed
from sim.services import service_process
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData

KINDS = {"0200": "withdrawal", "0100": "balance_inquiry"}
# name: (engine, host processes, --group-commit)
CONFIGS = {
    "sqlite": ("sqlite", 1, 256),
    "sqlite-2proc": ("sqlite", 2, 256),
    "postgresql": ("postgresql", 1, 256),
    "postgresql-2proc": ("postgresql", 2, 256),
    "sqlite-commit-each": ("sqlite", 1, 1),
}
AMOUNT = 2000  # minor units per withdrawal


@dataclasses.dataclass
class Level:
    kind: str
    clients: int
    requests: int
    elapsed: float
    latencies_us: list[float]
    codes: dict[str, int]
    errors: int
    host_cpu: float | None
    client_cpu: float
    db_cpu: float | None = None  # the PostgreSQL server's processes

    def summary(self) -> dict[str, Any]:
        n = max(self.requests, 1)
        return {
            "requests": self.requests,
            "rps": round(self.requests / self.elapsed, 1),
            "p50_us": round(percentile(self.latencies_us, 50), 1),
            "p99_us": round(percentile(self.latencies_us, 99), 1),
            "host_cpu_us_per_request": (
                None if self.host_cpu is None else round(self.host_cpu / n * 1e6, 1)
            ),
            "client_cpu_us_per_request": round(self.client_cpu / n * 1e6, 1),
            "db_cpu_us_per_request": (
                None if self.db_cpu is None else round(self.db_cpu / n * 1e6, 1)
            ),
            "response_codes": self.codes,
            "errors": self.errors,
        }


def templates(kind: str, link: TerminalLink, cards: Sequence[int]) -> list[Message]:
    """Unstamped requests from ``link``'s terminal, one per card, PIN blocks from its pad."""
    config = TerminalConfig(terminal_id=link.client.terminal_id, location="Benchmark")
    out = []
    for i in cards:
        pan = bench_pan(i)
        card = CardData(pan=pan, expiry="3012", track2=f"{pan}=3012201")
        block = bytes.fromhex(link.pin_fields(bench_pin(i), pan)["52"])
        if kind == "0200":
            out.append(transactions.withdrawal(config, card, block, AMOUNT))
        else:
            out.append(transactions.balance_inquiry(config, card, block))
    return out


async def open_links(
    n: int, port: int, seed: Path, stans: dict[str, StanSequence]
) -> list[TerminalLink]:
    """N terminals' links, signed on (key exchange + sign-on), for every kind at this N."""
    tids = [bench_terminal_id(i) for i in range(n)]
    links = [TerminalLink(seed, tid, port, stan=stans[tid], timeout=30.0) for tid in tids]
    await asyncio.gather(*(link.sign_on() for link in links))
    return links


async def run_level(
    kind: str, links: list[TerminalLink], args: argparse.Namespace, host: Cpu
) -> Level:
    n = len(links)
    clients = [link.client for link in links]
    # client i uses cards i, i+n, i+2n, ...: the load per card does not depend on n
    messages = [
        templates(kind, link, range(i % args.cards, args.cards, n) or [i % args.cards])
        for i, link in enumerate(links)
    ]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    errors = 0
    clock = time.perf_counter
    t_count = clock() + args.warmup
    t_end = t_count + args.duration
    cpu: dict[str, float | None] = {}

    async def sample_cpu() -> None:
        await asyncio.sleep(max(0.0, t_count - clock()))
        cpu["start"], cpu["client_start"] = host.host(), time.process_time()
        cpu["db_start"] = host.db()
        await asyncio.sleep(max(0.0, t_end - clock()))
        cpu["end"], cpu["client_end"] = host.host(), time.process_time()
        cpu["db_end"] = host.db()

    async def one_client(client: HostClient, mine: list[Message]) -> None:
        nonlocal errors
        for j in range(args.max_requests):
            t0 = clock()
            if t0 >= t_end:
                break
            try:
                response = await client.request(client.stamp(mine[j % len(mine)]))
            except Exception as exc:  # a benchmark counts failures, it does not stop
                errors += 1
                progress(f"  {client.terminal_id}: {type(exc).__name__}: {exc}")
                if errors > 100:
                    raise
                continue
            t1 = clock()
            if t0 >= t_count:
                latencies.append((t1 - t0) * 1e6)
                code = response.get("39", "??")
                codes[code] = codes.get(code, 0) + 1

    sampler = asyncio.create_task(sample_cpu())
    try:
        await asyncio.gather(*(one_client(c, m) for c, m in zip(clients, messages, strict=True)))
        elapsed = clock() - t_count
        await sampler
    finally:
        sampler.cancel()
    start_cpu, end_cpu = cpu.get("start"), cpu.get("end")
    host_cpu = None if start_cpu is None or end_cpu is None else end_cpu - start_cpu
    client_cpu = (cpu.get("client_end") or 0.0) - (cpu.get("client_start") or 0.0)
    db_start, db_end = cpu.get("db_start"), cpu.get("db_end")
    db_cpu = None if db_start is None or db_end is None else db_end - db_start
    return Level(
        kind, n, len(latencies), elapsed, latencies, codes, errors, host_cpu, client_cpu, db_cpu
    )


@dataclasses.dataclass
class Cpu:
    """CPU seconds so far of the host's process tree and of the database server's."""

    host_pid: int
    db_pid: int | None = None

    def host(self) -> float | None:
        return tree_cpu_seconds(self.host_pid)

    def db(self) -> float | None:
        return None if self.db_pid is None else tree_cpu_seconds(self.db_pid)


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and every live descendant (the ``--workers`` processes,
    PostgreSQL's backends): ``/proc``, so Linux only (None elsewhere)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        seconds = process_cpu_seconds(current)
        if seconds is None and current == pid:
            return None
        total += seconds or 0.0
        todo += parents.get(current, [])
    return total


def cache_pinpad_options() -> None:
    """Read the seed's key sets once, not once per terminal link: with 1,000 terminals
    parsing the seed for each link costs more than the level it prepares."""
    cached = functools.lru_cache(maxsize=None)(link_module.pinpad_options)
    link_module.pinpad_options = cached  # type: ignore[assignment]


def postmaster_pid(cluster: PgCluster) -> int | None:
    try:
        return int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def run_config(
    name: str, args: argparse.Namespace, workdir: Path, seed: Path, cluster: PgCluster | None
) -> list[Level]:
    engine, workers, batch = CONFIGS[name]
    terminals = [bench_terminal_id(i) for i in range(max(args.clients))]
    stans = {tid: StanSequence() for tid in terminals}  # fresh database: fresh STANs
    database = str(workdir / f"{name}.db")
    db_pid = None
    if engine == "postgresql":
        assert cluster is not None
        database, db_pid = cluster.create_database("bench"), postmaster_pid(cluster)
    # plain TCP: the baseline measures the host's authorisation work, not TLS records
    argv = ["--db", database, "--seed", str(seed), "--plain", "--demo"]
    argv += ["--log", str(workdir / f"{name}.log"), "--workers", str(workers)]
    argv += ["--group-commit", str(batch), "--max-connections", str(max(args.clients) + 16)]
    levels = []
    with service_process("host", argv) as host:
        cpu = Cpu(host.process.pid, db_pid)
        progress(f"{name}: host pid {host.process.pid} on {host.address}:{host.port}")
        for n in args.clients:
            links = await open_links(n, host.port, seed, stans)
            try:
                for kind in args.kinds:
                    levels.append(await run_level(kind, links, args, cpu))
                    s = levels[-1].summary()
                    progress(
                        f"{name} {kind} {KINDS[kind]} N={n}: {s['rps']:.0f} req/s,"
                        f" p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us,"
                        f" host CPU {s['host_cpu_us_per_request']} us/req,"
                        f" db CPU {s['db_cpu_us_per_request']} us/req,"
                        f" client CPU {s['client_cpu_us_per_request']} us/req,"
                        f" codes {s['response_codes']}, errors {s['errors']}"
                    )
            finally:
                await asyncio.gather(*(link.close() for link in links))
    return levels


async def run_host_bench(args: argparse.Namespace, workdir: Path) -> dict[str, list[Level]]:
    terminals = [bench_terminal_id(i) for i in range(max(args.clients))]
    seed = workdir / "bench-seed.toml"
    write_seed(seed, args.cards, terminals)
    cache_pinpad_options()
    cluster = None
    if any(CONFIGS[name][0] == "postgresql" for name in args.configs):
        cluster = PgCluster().start()
        progress(f"PostgreSQL cluster in {cluster.dir}")
    try:
        return {name: await run_config(name, args, workdir, seed, cluster) for name in args.configs}
    finally:
        if cluster is not None:
            cluster.stop()


def history(args: argparse.Namespace) -> dict[str, Any]:
    """``bench_host_history`` at each ``--history`` size: host CPU per 0200 in process."""
    options = argparse.Namespace(
        cards=200,
        days=90,
        per_card_day=2,
        requests=args.history_requests,
        warmup=200,  # a cold page cache after seeding 10^6 rows is not the steady state
        drop_index=[],
        check=False,
    )
    out = {}
    for size in args.history:
        with tempfile.TemporaryDirectory(prefix="atm-bench-history-", dir=args.dir) as tmp:
            out[str(size)] = run_size(size, options, Path(tmp))
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", default="1,10,100,1000", help="comma-separated N values")
    parser.add_argument("--kinds", default="0200,0100", help="MTIs to measure: 0200 and/or 0100")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="host set-ups to measure")
    parser.add_argument("--duration", type=float, default=1.5, help="timed seconds per level")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds per level")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client per level")
    parser.add_argument("--cards", type=int, default=1000, help="cards, shared out to clients")
    parser.add_argument(
        "--history", default="1000,1000000", help="transfers of history (bench_host_history)"
    )
    parser.add_argument("--history-requests", type=int, default=200, help="timed 0200s per size")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="parent of the temp dir")
    parser.add_argument(
        "--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR, help="baseline scripts"
    )
    parser.add_argument("--codec-number", type=int, default=5000, help="codec.py --number")
    parser.add_argument("--sqlite-seconds", type=float, default=1.0, help="0 skips it")
    parser.add_argument("--skip-baselines", action="store_true", help="no ratios (dev only)")
    parser.add_argument("--json", action="store_true", help="accepted: the last line is JSON")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(x) for x in args.clients.split(",")]
        args.history = [int(x) for x in args.history.split(",") if x.strip() and x != "0"]
    except ValueError:
        parser.error("--clients and --history must be comma-separated integers")
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    if any(k not in KINDS for k in args.kinds):
        parser.error(f"--kinds must be among {', '.join(KINDS)}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not args.configs or any(c not in CONFIGS for c in args.configs):
        parser.error(f"--configs must be among {', '.join(CONFIGS)}")
    if min(args.clients) < 1 or max(args.clients) > 1000:
        parser.error("--clients values must be 1..1000")
    if args.duration <= 0 or args.warmup < 0 or args.max_requests < 1 or args.cards < 1:
        parser.error("need --duration > 0, --warmup >= 0, --max-requests >= 1, --cards >= 1")
    return args


def by_n(results: dict[str, Any], kind: str, key: str, scale: float = 1.0) -> dict[str, Any]:
    """{config: {N: results[config][kind][N][key] * scale}} (the headline tables)."""
    out: dict[str, Any] = {}
    for config, kinds in results.items():
        for n, level in kinds.get(kind, {}).items():
            value = level.get(key)
            out.setdefault(config, {})[n] = None if value is None else round(value * scale, 3)
    return out


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figure it is judged on."""
    out: dict[str, Any] = {}
    by_history = report.get("host_cpu_us_by_history", {})
    if len(by_history) >= 2:
        sizes = sorted(by_history, key=int)
        growth = by_history[sizes[-1]] / max(by_history[sizes[0]], 1e-9)
        out["history_cpu_growth"] = round(growth, 2)
        out["history_within_1_5x"] = growth <= 1.5
    rps, p99 = report["rps"], report["p99_ms"]
    at_100 = {c: v["100"] for c, v in rps.items() if v.get("100") is not None}
    if at_100:
        best = max(at_100, key=lambda c: at_100[c])
        out["best_at_100"] = {"config": best, "rps": at_100[best], "p99_ms": p99[best]["100"]}
        out["5000_rps_p99_under_20ms_at_100"] = at_100[best] >= 5000 and p99[best]["100"] < 20
    cpu = report.get("host_cpu_vs_codec", {}).get("sqlite", {})
    if cpu.get("100") is not None:
        out["host_cpu_vs_codec_sqlite_100"] = cpu["100"]
        out["host_cpu_within_4x_codec"] = cpu["100"] <= 4
        host_us = report["host_cpu_us"]["sqlite"]["100"]
        if report.get("codec_p50_us"):
            out["host_cpu_vs_codec_p50_sqlite_100"] = round(host_us / report["codec_p50_us"], 2)
    scaling = {
        c: v["100"] >= v["1"] for c, v in rps.items() if v.get("100") and v.get("1") is not None
    }
    if scaling:
        out["rps_100_at_least_rps_1"] = scaling
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    baselines: dict[str, Any] = {}
    clients_arg = ",".join(map(str, args.clients))
    if not args.skip_baselines:
        baselines["echo"] = run_baseline(
            args.baseline_dir,
            "echo.py",
            "--clients",
            clients_arg,
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
        )
        baselines["codec"] = run_baseline(
            args.baseline_dir,
            "codec.py",
            "--repeats",
            "3",
            "--number",
            str(args.codec_number),
        )
        if args.sqlite_seconds > 0:
            baselines["sqlite"] = run_baseline(
                args.baseline_dir,
                "sqlite_commit.py",
                "--seconds",
                str(args.sqlite_seconds),
                "--dir",
                args.dir,
            )
    with tempfile.TemporaryDirectory(prefix="atm-bench-auth-", dir=args.dir) as tmp:
        progress(
            f"host auth: configs {args.configs}, kinds {args.kinds}, N {args.clients},"
            f" {args.duration} s each"
        )
        configs = asyncio.run(run_host_bench(args, Path(tmp)))
    by_history = history(args) if args.history else {}

    results: dict[str, dict[str, dict[str, Any]]] = {}
    ok = True
    for config, levels in configs.items():
        for level in levels:
            s = level.summary()
            ok &= level.errors == 0 and set(level.codes) == {"00"}
            if baselines:
                echo = baselines["echo"]["results"][str(level.clients)]
                codec_us = baselines["codec"]["us_per_op"]
                s["vs_echo_rps"] = round(s["rps"] / echo["rps"], 3)
                s["vs_echo_p50"] = round(s["p50_us"] / echo["p50_us"], 2)
                if s["host_cpu_us_per_request"] is not None:
                    s["host_cpu_vs_codec_round_trip"] = round(
                        s["host_cpu_us_per_request"] / codec_us, 2
                    )
                if "sqlite" in baselines:
                    full = baselines["sqlite"]["results"]["full"]["commits_per_s"]
                    s["vs_sqlite_full_commits"] = round(s["rps"] / full, 3)
            results.setdefault(config, {}).setdefault(level.kind, {})[str(level.clients)] = s
    report: dict[str, Any] = {
        "name": "bench_host_auth",
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cards": args.cards,
    }
    if baselines:
        report["echo_rps"] = {n: r["rps"] for n, r in baselines["echo"]["results"].items()}
        report["codec_us"] = baselines["codec"]["us_per_op"]
        # single round trips' median: on a loaded machine the block mean (wall clock)
        # carries the waits for a core, the host's CPU time does not
        report["codec_p50_us"] = baselines["codec"].get("p50_us")
        if "sqlite" in baselines:
            full = baselines["sqlite"]["results"]["full"]
            report["sqlite_full_commits_per_s"] = full["commits_per_s"]
            report["sqlite_fs"] = baselines["sqlite"].get("fs")
    report["rps"] = by_n(results, "0200", "rps")
    report["p99_ms"] = by_n(results, "0200", "p99_us", 1e-3)
    report["rps_0100"] = by_n(results, "0100", "rps")
    report["p99_ms_0100"] = by_n(results, "0100", "p99_us", 1e-3)
    report["host_cpu_us"] = by_n(results, "0200", "host_cpu_us_per_request")
    report["db_cpu_us"] = by_n(results, "0200", "db_cpu_us_per_request")
    report["host_cpu_vs_codec"] = by_n(results, "0200", "host_cpu_vs_codec_round_trip")
    report["host_cpu_us_by_history"] = {
        size: r["host_cpu_us_per_request"] for size, r in by_history.items()
    }
    report["history"] = by_history
    report["targets"] = targets(report)
    report["results"] = results
    report["ok"] = ok and all(set(r["response_codes"]) == {"00"} for r in by_history.values())
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
