"""Chaos soak at benchmark scale: 10,000 headless withdrawals with every fault injected.

Measures the wall time of ``atm soak`` (its checks included) and its session rate, with
the SQLite durable-commit baseline from bench/baselines/ run in the same run, since a
soak session's cost is mostly durable commits and process restarts. Prints one JSON
object last: the soak's own report (discrepancies must be 0) plus timing and ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_BASELINE_DIR, progress, run_baseline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR)
    args = parser.parse_args()
    baseline = run_baseline(args.baseline_dir, "sqlite_commit.py", "--seconds", "1")
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        progress(f"soak: {args.transactions} transactions, seed {args.seed}, all faults")
        started = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "atm",
                "soak",
                "--transactions",
                str(args.transactions),
                "--seed",
                str(args.seed),
                "--workdir",
                tmp,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        elapsed = time.perf_counter() - started
    if run.returncode != 0:
        progress(run.stdout + run.stderr[-2000:])
        return 1
    report = json.loads(run.stdout)
    rate = args.transactions / elapsed
    full = baseline["results"]["full"]["commits_per_s"]
    result = {
        "name": "bench_soak",
        **report,
        "elapsed_s": round(elapsed, 1),
        "sessions_per_s": round(rate, 1),
        "baseline_full_commits_per_s": full,
        "sessions_per_full_commit_rate": round(rate / full, 4),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
