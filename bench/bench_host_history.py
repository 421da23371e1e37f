"""Benchmark: the host's CPU per 0200 authorisation against the size of its history.

What is measured: :meth:`sim.host.authoriser.Authoriser.handle` in this process (no TCP,
no codec: the host's own work - PIN verification, the rules with the daily-limit
query, the idempotency record and the ledger posting in one SQLite ``synchronous=FULL``
transaction) for 0200 cash withdrawals, on a fresh host database (a generated seed:
``--cards`` cards, one TDES terminal, balances and limits that never decline) into which
``N`` transfers of history were written first: withdrawals of those cards spread over
``--days`` business dates up to today (more for a large N: at most ``--per-card-day``
transfers per card and date, so that a larger history is a longer past, not busier
cards: a card's day is what its daily limit sums), one in twenty reversed. For each N
(10^3, 10^4 and 10^5; 10^6 too with ``--huge``), after ``--warmup`` untimed requests,
``--requests`` withdrawals are timed one by one: CPU time (``time.process_time``) and
wall time of ``handle``. A host whose cost grows with its history shows it here; one
whose every query uses an index (``tests/host/test_query_plans.py``) stays flat.

``--drop-index NAME`` drops a host index after seeding (to measure the plan without it).
Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import percentile, progress

from atm_common.clock import ManualClock
from atm_common.crypto.pinblock import encrypt_format0
from atm_common.crypto.tdes import decrypt_block
from host_link.client import HostClient
from host_link.codec import Message
from sim.host import db
from sim.host.authoriser import Authoriser
from sim.host.ledger import Ledger, transaction
from sim.host.seed import load_seed
from sim.scenarios.seedgen import card_pan, card_pin, write_seed
from sim.scenarios.seedgen import terminal_id as bench_terminal_id
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData

SIZES = (1_000, 10_000, 100_000)
HUGE = 1_000_000
AMOUNT = 2000  # minor units per withdrawal
REVERSED_ONE_IN = 20


class BenchTerminal:
    """One TDES terminal: key exchange through the host, then stamped 0200s."""

    def __init__(self, authoriser: Authoriser, seed: Path, clock: ManualClock) -> None:
        self.authoriser = authoriser
        self.terminal_id = bench_terminal_id(0)
        with seed.open("rb") as f:
            term = {t["id"]: t for t in tomllib.load(f)["terminals"]}[self.terminal_id]
        self.config = TerminalConfig(terminal_id=self.terminal_id, location="Benchmark")
        self.client = HostClient("127.0.0.1", 1, terminal_id=self.terminal_id, clock=clock)
        response = authoriser.handle(self.client.stamp({"t": "0800", "70": "101"}))
        if response is None or response.get("39") != "00":
            raise SystemExit(f"key exchange refused: {response}")
        keys = dict(item.split("=", 1) for item in response["63"].split(";") if item)
        self.tpk = decrypt_block(bytes.fromhex(term["tmk"]), bytes.fromhex(keys["TPK"]))

    def withdrawal(self, index: int) -> Message:
        pan = card_pan(index)
        card = CardData(pan=pan, expiry="3012", track2=f"{pan}=3012201")
        block = encrypt_format0(card_pin(index), pan, self.tpk)
        return self.client.stamp(transactions.withdrawal(self.config, card, block, AMOUNT))


def seed_history(
    conn: Any, size: int, days: int, today: dt.datetime, cash_account: str, rng: random.Random
) -> None:
    """``size`` transfers: withdrawals of the seeded cards over ``days`` dates up to
    today, every ``REVERSED_ONE_IN``-th followed by its reversal; account counters kept
    in step, so the books still balance (``Ledger.check``)."""
    cards = conn.execute(
        "SELECT ca.pan_ref, ca.account_id FROM card_accounts ca WHERE ca.is_default = 1"
    ).fetchall()
    (next_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM transfers").fetchone()
    rows = []
    while len(rows) < size:
        pan_ref, account = cards[rng.randrange(len(cards))]
        when = today - dt.timedelta(days=rng.randrange(days), seconds=rng.randrange(86_400))
        date, stamp = when.date().isoformat(), when.isoformat()
        amount = rng.randrange(1, 20) * 1000
        rows.append(
            (next_id, account, cash_account, amount, "withdrawal", None, pan_ref, date, stamp)
        )
        if next_id % REVERSED_ONE_IN == 0 and len(rows) < size:
            reversal = (next_id + 1, cash_account, account, amount, "reversal", next_id)
            rows.append((*reversal, pan_ref, date, stamp))
            next_id += 1
        next_id += 1
    # the counters' increments, summed here: a correlated SUM per account would scan
    # the history once per account (no index leads with debit_account), minutes at 10^6
    sums: dict[tuple[str, str], int] = {}
    for row in rows:
        for key in (("debits", row[1]), ("credits", row[2])):
            sums[key] = sums.get(key, 0) + row[3]
    # bulk load: the history's indexes are built once after the rows, not row by row, and
    # this setup commit need not be durable (the timed requests' commits are)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transfers'"
        " AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("PRAGMA synchronous = OFF")
    with transaction(conn):
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.executemany(
            "INSERT INTO transfers (id, debit_account, credit_account, amount, status, kind,"
            " reverses_id, pan_ref, terminal_id, business_date, created_at)"
            " VALUES (?,?,?,?,'posted',?,?,?,'HISTORY0',?,?)",
            rows,
        )
        for (side, account), total in sums.items():
            conn.execute(
                f"UPDATE accounts SET {side}_posted = {side}_posted + ? WHERE id = ?",
                (total, account),
            )
        for _, sql in indexes:
            conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA synchronous = FULL")


def run_size(size: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seed = workdir / "seed.toml"
    write_seed(seed, args.cards, [bench_terminal_id(0)])
    clock = ManualClock()
    conn = db.connect(workdir / "host.db")
    try:
        keys, settings = load_seed(conn, seed, Ledger(conn, clock))
        authoriser = Authoriser(conn, keys, settings, clock)
        terminal = BenchTerminal(authoriser, seed, clock)
        t0 = time.perf_counter()
        cash_account = f"GL-CASH-{terminal.terminal_id}"
        days = max(args.days, -(-size // (args.cards * args.per_card_day)))
        seed_history(conn, size, days, clock.now(), cash_account, random.Random(size))
        for name in args.drop_index:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        (transfers,) = conn.execute("SELECT COUNT(*) FROM transfers").fetchone()
        progress(f"N={size}: {transfers} transfers seeded in {time.perf_counter() - t0:.1f} s")
        rng = random.Random(1)
        cpu_us: list[float] = []
        wall_us: list[float] = []
        codes: dict[str, int] = {}
        for j in range(args.warmup + args.requests):
            request = terminal.withdrawal(rng.randrange(args.cards))
            c0, w0 = time.process_time(), time.perf_counter()
            response = authoriser.handle(request)
            c1, w1 = time.process_time(), time.perf_counter()
            if j < args.warmup:
                continue
            cpu_us.append((c1 - c0) * 1e6)
            wall_us.append((w1 - w0) * 1e6)
            code = "none" if response is None else response.get("39", "??")
            codes[code] = codes.get(code, 0) + 1
        problems = Ledger(conn, clock).check() if args.check else []
    finally:
        conn.close()
    result = {
        "transfers": transfers,
        "requests": len(cpu_us),
        "host_cpu_us_per_request": round(sum(cpu_us) / max(len(cpu_us), 1), 1),
        "host_cpu_p50_us": round(percentile(cpu_us, 50), 1),
        "host_cpu_p99_us": round(percentile(cpu_us, 99), 1),
        "wall_p50_us": round(percentile(wall_us, 50), 1),
        "response_codes": codes,
        "ledger_problems": len(problems),
    }
    progress(
        f"N={size}: host CPU {result['host_cpu_us_per_request']} us/0200"
        f" (p50 {result['host_cpu_p50_us']}, p99 {result['host_cpu_p99_us']}),"
        f" wall p50 {result['wall_p50_us']} us, codes {codes}"
    )
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="transfers seeded")
    parser.add_argument("--huge", action="store_true", help=f"also {HUGE:,} transfers (slow)")
    parser.add_argument("--requests", type=int, default=300, help="timed 0200s per size")
    parser.add_argument("--warmup", type=int, default=30, help="untimed 0200s per size")
    parser.add_argument("--cards", type=int, default=200, help="cards in the generated seed")
    parser.add_argument("--days", type=int, default=90, help="business dates of history")
    parser.add_argument(
        "--per-card-day", type=int, default=2, help="most transfers per card and date (mean)"
    )
    parser.add_argument("--check", action="store_true", help="Ledger.check() after each size")
    parser.add_argument("--drop-index", action="append", default=[], help="dev: plan without it")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="parent of the temp dirs")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if args.huge and HUGE not in args.sizes:
        args.sizes.append(HUGE)
    if min(args.sizes) < 1 or args.requests < 1 or args.warmup < 0 or args.cards < 1:
        parser.error("need --sizes >= 1, --requests >= 1, --warmup >= 0, --cards >= 1")
    if args.days < 1 or args.per_card_day < 1:
        parser.error("need --days >= 1 and --per-card-day >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="atm-bench-history-", dir=args.dir) as tmp:
            results[str(size)] = run_size(size, args, Path(tmp))
    ok = all(
        set(r["response_codes"]) == {"00"} and r["ledger_problems"] == 0 for r in results.values()
    )
    smallest, largest = results[str(min(args.sizes))], results[str(max(args.sizes))]
    report: dict[str, Any] = {
        "name": "bench_host_history",
        "requests": args.requests,
        "warmup": args.warmup,
        "cards": args.cards,
        "days": args.days,
        "dropped_indexes": args.drop_index,
        "results": results,
        "cpu_growth_largest_vs_smallest": round(
            largest["host_cpu_us_per_request"] / max(smallest["host_cpu_us_per_request"], 1e-9),
            2,
        ),
        "ok": ok,
    }
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
