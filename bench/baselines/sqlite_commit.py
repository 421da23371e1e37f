"""Baseline: how many durable SQLite commits per second this machine's disk allows.

Measures: a ledger-shaped workload on a plain SQLite file in WAL mode through one
connection, no project code. One authorisation is one debit posting, one credit posting
(two INSERTs) and one balance UPDATE. Four variants, each on a fresh file:

  full        ``synchronous=FULL``, one authorisation per transaction; every COMMIT
              waits for an fsync, which is what a durable ledger or journal pays
  normal      ``synchronous=NORMAL``, one authorisation per transaction; in WAL mode
              the commit is not fsynced (only checkpoints are), so it survives a
              process crash but not a power cut
  group_full  ``synchronous=FULL`` with ``--batch`` authorisations per transaction: the
              ceiling when many requests share one fsync (group commit)
  fsync       no SQLite at all: append a 512-byte record to a file and ``os.fsync`` it,
              the raw price of one durable write on this file system

Why: the terminal journal and the host ledger commit with ``synchronous=FULL``, so their
throughput is bounded by this rate. Project benchmarks divide by ``full.commits_per_s``
measured in the same run. Point ``--dir`` at the file system the project writes to: the
result reports that file system's type, and on tmpfs an fsync costs nothing, which would
make the baseline meaningless.

Each variant runs for ``--seconds`` or ``--max-commits`` commits, whichever ends first,
and reports commits/s, authorisations/s and p50/p99 microseconds per commit. Progress
goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TABLES = """
CREATE TABLE accounts (
    account_id INTEGER PRIMARY KEY,
    balance_minor INTEGER NOT NULL
);
CREATE TABLE postings (
    posting_id INTEGER PRIMARY KEY,
    auth_no INTEGER NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(account_id),
    amount_minor INTEGER NOT NULL
);
"""
CASH_IN_MACHINES = 0  # the settlement account every withdrawal credits
RECORD = b"J" * 511 + b"\n"  # the bare-fsync variant's 512-byte record


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def file_system_of(path: str) -> str:
    """Type of the file system holding ``path``, from the longest matching mount point."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return "unknown"
    found, found_len = "unknown", -1
    for entry in entries:
        if len(entry) < 3:
            continue
        mount = entry[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > found_len:
            found, found_len = entry[2], len(mount)
    return found


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarise(latencies_us: list[float], auths: int, elapsed: float) -> dict[str, Any]:
    commits = len(latencies_us)
    return {
        "commits": commits,
        "auths": auths,
        "seconds": round(elapsed, 3),
        "commits_per_s": round(commits / elapsed),
        "auths_per_s": round(auths / elapsed),
        "p50_us": round(nearest_rank(latencies_us, 50), 1),
        "p99_us": round(nearest_rank(latencies_us, 99), 1),
    }


def timed_loop(step: Callable[[], int], seconds: float, max_commits: int) -> dict[str, Any]:
    """Call ``step`` (one commit, returns authorisations in it) until time or count ends."""
    latencies_us: list[float] = []
    auths = 0
    started = time.perf_counter()
    stop_at = started + seconds
    while len(latencies_us) < max_commits:
        before = time.perf_counter()
        if before >= stop_at:
            break
        auths += step()
        latencies_us.append((time.perf_counter() - before) * 1e6)
    return summarise(latencies_us, auths, time.perf_counter() - started)


def ledger_variant(folder: Path, synchronous: str, per_commit: int, args: Any) -> dict[str, Any]:
    db = sqlite3.connect(folder / "ledger.sqlite3", isolation_level=None)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise SystemExit(f"SQLite refused WAL mode in {folder} (got {mode!r})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(TABLES)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO accounts VALUES (?, ?)",
            ((n, 5_000_000_00) for n in range(args.accounts + 1)),
        )
        db.execute("COMMIT")
        pick = random.Random(7)
        counter = 0

        def commit_once() -> int:
            nonlocal counter
            db.execute("BEGIN")
            for _ in range(per_commit):
                counter += 1
                account = pick.randrange(1, args.accounts + 1)
                amount = pick.choice((2000, 4000, 6000, 10000, 20000))
                db.execute(
                    "INSERT INTO postings (auth_no, account_id, amount_minor) VALUES (?, ?, ?)",
                    (counter, account, -amount),
                )
                db.execute(
                    "INSERT INTO postings (auth_no, account_id, amount_minor) VALUES (?, ?, ?)",
                    (counter, CASH_IN_MACHINES, amount),
                )
                db.execute(
                    "UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = ?",
                    (amount, account),
                )
            db.execute("COMMIT")
            return per_commit

        outcome = timed_loop(commit_once, args.seconds, args.max_commits)
        rows = db.execute("SELECT count(*), coalesce(sum(amount_minor), 0) FROM postings")
        count, net = rows.fetchone()
        if count != 2 * counter or net != 0:
            raise SystemExit(f"ledger check failed: {count} postings, net {net}")
        return outcome
    finally:
        db.close()


def fsync_variant(folder: Path, args: Any) -> dict[str, Any]:
    fd = os.open(folder / "append.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:

        def write_and_sync() -> int:
            os.write(fd, RECORD)
            os.fsync(fd)
            return 1

        return timed_loop(write_and_sync, args.seconds, args.max_commits)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="SQLite WAL durable commit limit on this machine (baseline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dir", default=tempfile.gettempdir(), help="parent folder of the scratch files"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per variant (0..120)")
    parser.add_argument("--max-commits", type=int, default=200_000, help="per variant")
    parser.add_argument("--batch", type=int, default=32, help="authorisations per group commit")
    parser.add_argument("--accounts", type=int, default=1000, help="customer accounts")
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 1 <= args.max_commits <= 10_000_000:
        parser.error("--seconds must be in (0, 120] and --max-commits 1..10,000,000")
    if not 1 <= args.batch <= 10_000 or not 1 <= args.accounts <= 1_000_000:
        parser.error("--batch must be 1..10,000 and --accounts 1..1,000,000")
    if not os.path.isdir(args.dir):
        parser.error(f"--dir {args.dir} is not a folder")

    fs = file_system_of(args.dir)
    progress(f"sqlite: SQLite {sqlite3.sqlite_version} in {args.dir} ({fs}), {args.seconds} s each")
    if fs in {"tmpfs", "ramfs"}:
        progress(f"sqlite: warning: {fs} makes fsync free; the commit limit is not the disk's")
    plan: dict[str, Callable[[Path], dict[str, Any]]] = {
        "full": lambda folder: ledger_variant(folder, "FULL", 1, args),
        "normal": lambda folder: ledger_variant(folder, "NORMAL", 1, args),
        "group_full": lambda folder: ledger_variant(folder, "FULL", args.batch, args),
        "fsync": lambda folder: fsync_variant(folder, args),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, run in plan.items():
        with tempfile.TemporaryDirectory(prefix="atm-baseline-sqlite-", dir=args.dir) as folder:
            results[name] = run(Path(folder))
        r = results[name]
        progress(
            f"sqlite: {name}: {r['commits_per_s']} commits/s, {r['auths_per_s']} auths/s, "
            f"p50 {r['p50_us']} us, p99 {r['p99_us']} us"
        )
    print(
        json.dumps(
            {
                "name": "baseline_sqlite_wal_commit",
                "sqlite": sqlite3.sqlite_version,
                "dir": args.dir,
                "fs": fs,
                "seconds": args.seconds,
                "batch": args.batch,
                "accounts": args.accounts,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
