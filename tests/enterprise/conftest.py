"""A real ``atm host --api-port 0`` process on the demo bank, per test."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.bank.client import EnterpriseClient
from sim.services import read_listening
from tests.host.helpers import DEMO_SEED

COMPANY = "ACME-TRUST"
PASSWORDS = {"gail": "gail-pass-1", "henk": "henk-pass-2", "ines": "ines-pass-3"}
PASSWORDS |= {"jan": "jan-pass-4", "kim": "kim-pass-5"}
ADMINS = {"admin-ana": "ana-checks-1", "admin-ben": "ben-checks-2"}


@dataclasses.dataclass
class HostProcess:
    process: subprocess.Popen[str]
    iso_port: int
    url: str
    db: Path
    log: Path

    def client(self) -> EnterpriseClient:
        return EnterpriseClient(self.url)

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        """Read the host's database as it is now (another connection, WAL)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def balances(self) -> dict[str, int]:
        rows = self.query(
            "SELECT id, credits_posted - debits_posted - debits_pending FROM accounts"
        )
        return {r[0]: r[1] for r in rows}

    def events(self, **match: str) -> list[sqlite3.Row]:
        rows = self.query("SELECT * FROM ent_events ORDER BY at")
        return [r for r in rows if all(r[k] == v for k, v in match.items())]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostProcess]:
    db, log = tmp_path / "host.db", tmp_path / "host.log"
    argv = [sys.executable, "-m", "sim", "--log-level", "debug", "host", "--demo", "--plain"]
    argv += ["--db", str(db), "--seed", str(DEMO_SEED), "--log", str(log)]
    argv += ["--port", "0", "--api-port", "0"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with (tmp_path / "stderr.txt").open("w+") as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            try:
                _, port = read_listening(proc, "host")
            except Exception:
                proc.kill()
                proc.wait()
                errors.seek(0)
                raise AssertionError(f"host did not start: {errors.read()}") from None
            assert proc.stdout is not None
            url = proc.stdout.readline().strip().split()[-1]
            yield HostProcess(proc, port, url, db, log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def seed_table() -> list[dict[str, Any]]:
    """The demo company's permission table, as the seed states it."""
    with DEMO_SEED.open("rb") as f:
        seed = tomllib.load(f)
    (company,) = [c for c in seed["enterprise"]["companies"] if c["id"] == COMPANY]
    table: list[dict[str, Any]] = company["table"]
    return table


def holders() -> dict[tuple[str, str], str]:
    """(role, department) -> the demo user who holds it."""
    with DEMO_SEED.open("rb") as f:
        seed = tomllib.load(f)
    (company,) = [c for c in seed["enterprise"]["companies"] if c["id"] == COMPANY]
    out = {}
    for user in company["users"]:
        for held in user["roles"]:
            role, _, department = held.partition("@")
            out[(role, department)] = user["person"]
    return out
