"""Benchmark: bank host authorisations per second with 1, 10 and 100 terminal connections.

What is measured: the host simulator (``atm host``, its own process: asyncio TCP server,
ISO 8583 codec, PIN verification, idempotency record and ledger posting in one SQLite
``synchronous=FULL`` transaction per request) driven over real loopback TCP by N
concurrent :class:`host_link.client.HostClient` connections in this process. Each
connection is its own terminal (distinct terminal id and PIN key from a generated seed,
so STANs never collide) and sends requests back to back, one outstanding at a time:
0200 cash withdrawals and/or 0100 balance inquiries, each with a real PIN block, on
cards with balances and limits that never decline. For each kind and N, after a
warm-up, requests started in the next ``--duration`` seconds are counted and timed
(the method of ``baselines/echo.py``).

Reported per kind and N: requests/s, p50/p99 latency, the host process's CPU time per
request, and, measured in the same run, ratios against ``bench/baselines/``:
``echo.py`` at the same N (loopback limit), ``codec.py`` (pyiso8583
0200 round trip) and ``sqlite_commit.py`` (``synchronous=FULL`` commit rate; each
request is one such commit). Progress goes to stderr; the last stdout line is one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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

from host_link.client import HostClient, StanSequence
from host_link.codec import Message
from sim.scenarios.demo import host_process
from sim.scenarios.link import TerminalLink
from sim.scenarios.seedgen import card_pan as bench_pan
from sim.scenarios.seedgen import card_pin as bench_pin
from sim.scenarios.seedgen import terminal_id as bench_terminal_id
from sim.scenarios.seedgen import write_seed
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData

KINDS = {"0200": "withdrawal", "0100": "balance_inquiry"}
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


async def run_level(
    kind: str,
    n: int,
    args: argparse.Namespace,
    port: int,
    host_pid: int,
    seed: Path,
    stans: dict[str, StanSequence],
) -> Level:
    tids = [bench_terminal_id(i) for i in range(n)]
    links = [TerminalLink(seed, tid, port, stan=stans[tid], timeout=30.0) for tid in tids]
    await asyncio.gather(*(link.sign_on() for link in links))  # key exchange + sign-on
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
        cpu["start"], cpu["client_start"] = process_cpu_seconds(host_pid), time.process_time()
        await asyncio.sleep(max(0.0, t_end - clock()))
        cpu["end"], cpu["client_end"] = process_cpu_seconds(host_pid), time.process_time()

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
        await asyncio.gather(*(link.close() for link in links))
    start_cpu, end_cpu = cpu.get("start"), cpu.get("end")
    host_cpu = None if start_cpu is None or end_cpu is None else end_cpu - start_cpu
    client_cpu = (cpu.get("client_end") or 0.0) - (cpu.get("client_start") or 0.0)
    return Level(kind, n, len(latencies), elapsed, latencies, codes, errors, host_cpu, client_cpu)


async def run_host_bench(args: argparse.Namespace, workdir: Path) -> list[Level]:
    terminals = [bench_terminal_id(i) for i in range(max(args.clients))]
    seed = workdir / "bench-seed.toml"
    write_seed(seed, args.cards, terminals)
    stans = {tid: StanSequence() for tid in terminals}  # kept across levels: no STAN reuse
    levels = []
    # plain TCP: the baseline measures the host's authorisation work, not TLS records
    with host_process(workdir / "host.db", seed, workdir / "host.log", demo=True, pki=None) as host:
        progress(f"host pid {host.process.pid} on {host.address}:{host.port}")
        for kind in args.kinds:
            for n in args.clients:
                level = await run_level(kind, n, args, host.port, host.process.pid, seed, stans)
                s = level.summary()
                progress(
                    f"{kind} {KINDS[kind]} N={n}: {s['rps']:.0f} req/s, p50 {s['p50_us']:.0f} us,"
                    f" p99 {s['p99_us']:.0f} us, host CPU {s['host_cpu_us_per_request']} us/req,"
                    f" client CPU {s['client_cpu_us_per_request']} us/req,"
                    f" codes {s['response_codes']}, errors {s['errors']}"
                )
                levels.append(level)
    return levels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", default="1,10,100", help="comma-separated N values")
    parser.add_argument("--kinds", default="0200,0100", help="MTIs to measure: 0200 and/or 0100")
    parser.add_argument("--duration", type=float, default=2.0, help="timed seconds per level")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds per level")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client per level")
    parser.add_argument("--cards", type=int, default=1000, help="cards, shared out to clients")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="parent of the temp dir")
    parser.add_argument(
        "--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR, help="baseline scripts"
    )
    parser.add_argument("--codec-number", type=int, default=5000, help="codec.py --number")
    parser.add_argument("--sqlite-seconds", type=float, default=1.0, help="0 skips it")
    parser.add_argument("--skip-baselines", action="store_true", help="no ratios (dev only)")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(x) for x in args.clients.split(",")]
    except ValueError:
        parser.error("--clients must be comma-separated integers")
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    if any(k not in KINDS for k in args.kinds):
        parser.error(f"--kinds must be among {', '.join(KINDS)}")
    if min(args.clients) < 1 or max(args.clients) > 1000:
        parser.error("--clients values must be 1..1000")
    if args.duration <= 0 or args.warmup < 0 or args.max_requests < 1 or args.cards < 1:
        parser.error("need --duration > 0, --warmup >= 0, --max-requests >= 1, --cards >= 1")
    return args


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
        progress(f"host auth: kinds {args.kinds}, N {args.clients}, {args.duration} s each")
        levels = asyncio.run(run_host_bench(args, Path(tmp)))

    results: dict[str, dict[str, Any]] = {}
    ok = True
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
        results.setdefault(level.kind, {})[str(level.clients)] = s
    report: dict[str, Any] = {
        "name": "bench_host_auth",
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cards": args.cards,
        "results": results,
    }
    if baselines:
        report["baseline"] = {
            "echo": baselines["echo"]["results"],
            "codec_us_per_op": baselines["codec"]["us_per_op"],
        }
        if "sqlite" in baselines:
            full = baselines["sqlite"]["results"]["full"]
            report["baseline"]["sqlite_full_commits_per_s"] = full["commits_per_s"]
            report["baseline"]["sqlite_full_p50_us"] = full["p50_us"]
            report["baseline"]["sqlite_fs"] = baselines["sqlite"].get("fs")
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
