"""The chaos soak as CI runs it: thousands of sessions, every fault, money conserved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.host.storage.cluster import PgCluster
from sim.soak.harness import FAULTS

pytestmark = pytest.mark.e2e


def _soak(
    tmp_path: Path, transactions: int, seed: int, faults: str = "all", *extra: str
) -> dict[str, object]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "atm",
            "soak",
            "--transactions",
            str(transactions),
            "--seed",
            str(seed),
            "--faults",
            faults,
            "--workdir",
            str(tmp_path),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    return dict(json.loads(run.stdout))


def test_soak_2000_transactions_all_faults(tmp_path: Path) -> None:
    report = _soak(tmp_path, 2000, 1)
    assert report["transactions"] == 2000
    assert report["discrepancies"] == 0 and report["duplicate_postings"] == 0
    assert report["saf_pending"] == 0 and report["exception_queue"] == 0
    faults = report["faults"]
    assert isinstance(faults, dict) and set(faults) == set(FAULTS)  # every fault really fired
    assert all(n > 0 for n in faults.values())


def test_same_seed_same_run_and_another_seed_also_clean(tmp_path: Path) -> None:
    first = _soak(tmp_path / "a", 300, 42)
    again = _soak(tmp_path / "b", 300, 42)
    assert first.pop("elapsed_s") and again.pop("elapsed_s")  # the one thing not replayed
    assert first == again
    other = _soak(tmp_path / "c", 300, 7, faults="terminal_killed,host_killed,response_lost")
    assert other["discrepancies"] == 0 and other["duplicate_postings"] == 0
    assert set(other["faults"]) <= {"terminal_killed", "host_killed", "response_lost"}  # type: ignore[arg-type]


def test_two_host_processes_on_postgresql_keep_money_exact(tmp_path: Path) -> None:
    """The ledger in PostgreSQL (a private cluster), served by two host processes on one
    port: every fault, kill -9 of both included, and the money checks all hold."""
    cluster = PgCluster().start()
    try:
        url = cluster.create_database("soak")
        report = _soak(tmp_path, 600, 3, "all", "--db", url, "--host-workers", "2")
    finally:
        cluster.stop()
    assert report["transactions"] == 600
    assert report["discrepancies"] == 0 and report["duplicate_postings"] == 0
    assert report["saf_pending"] == 0 and report["exception_queue"] == 0
    faults = report["faults"]
    assert isinstance(faults, dict) and faults.get("host_killed", 0) > 0


def test_unknown_fault_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "atm",
            "soak",
            "--transactions",
            "1",
            "--faults",
            "meteor",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "meteor" in run.stderr and "host_killed" in run.stderr
