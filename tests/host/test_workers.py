"""``atm host --workers 2``: two real host processes on one port and one ledger (SQLite
file or PostgreSQL database), many terminals at once, money exact afterwards."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from atm_common.clock import SystemClock
from sim.host import db
from sim.host.ledger import Ledger
from sim.services import read_listening, service_argv
from tests.host.helpers import ALICE, BOB, LinkTerminal, seed_with_terminals

pytestmark = pytest.mark.e2e


def test_two_workers_share_the_port_and_keep_money_exact(
    tmp_path: Path, host_db: Path | str
) -> None:
    ids = [f"ATM0040{i}" for i in range(6)]
    seed = seed_with_terminals(tmp_path / "seed.toml", ids)
    argv = ["--plain", "--demo", "--db", str(host_db), "--seed", str(seed), "--port", "0"]
    argv += ["--workers", "2", "--log", str(tmp_path / "host.log")]
    process = subprocess.Popen(service_argv("host", *argv), stdout=subprocess.PIPE, text=True)
    try:
        _, port = read_listening(process, "host")
        listening = subprocess.run(
            ["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
        assert len(set(listening.split("pid=")[1:])) == 2  # two processes listen on it

        async def one(index: int) -> list[str]:
            term = LinkTerminal(port, SystemClock(), ids[index], seed=seed)
            await term.sign_on()
            try:
                card = (ALICE, BOB)[index % 2]
                return [(await term.request(term.withdrawal(card, 100)))["39"] for _ in range(5)]
            finally:
                await term.close()

        async def main() -> list[list[str]]:
            return await asyncio.gather(*(one(i) for i in range(len(ids))))

        codes = asyncio.run(main())
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert all(code == "00" for codes_ in codes for code in codes_), codes
    conn = db.connect(host_db)
    try:
        ledger = Ledger(conn, SystemClock())
        assert ledger.check() == []
        (withdrawals,) = conn.execute(
            "SELECT COUNT(*) FROM transfers WHERE kind = 'withdrawal'"
        ).fetchone()
        assert withdrawals == 30
        assert ledger.balance(ALICE.account).ledger == 250_000 - 15 * 100
        assert ledger.balance(BOB.account).ledger == 5_000 - 15 * 100
    finally:
        conn.close()
