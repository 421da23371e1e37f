"""A real host (in-process, real TCP on port 0, real SQLite file) and a terminal on
simulated devices, for session-level tests. The link is plain TCP here: TLS has its own
tests (tests/security/test_tls_link.py); these are about the sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from atm_common.clock import ManualClock
from sim.host.app import build_host
from sim.host.server import HostServer
from sim.host.storage.cluster import PgCluster
from sim.scenarios.demo import DEMO_SEED, demo_terminal, seed_cards
from sim.scenarios.scripts import Customer, Scenario, apply
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import SimPinPad
from terminal.session import SessionResult

T = TypeVar("T")


@dataclasses.dataclass
class Rig:
    host: HostServer
    terminal: Terminal
    clock: ManualClock
    cards: dict[str, tuple[CardData, str]]

    @property
    def reader(self) -> SimCardReader:
        reader = self.terminal.devices.card_reader
        assert isinstance(reader, SimCardReader)
        return reader

    @property
    def pinpad(self) -> SimPinPad:
        pinpad = self.terminal.devices.pinpad
        assert isinstance(pinpad, SimPinPad)
        return pinpad

    @property
    def dispenser(self) -> SimDispenser:
        dispenser = self.terminal.devices.dispenser
        assert isinstance(dispenser, SimDispenser)
        return dispenser

    async def play(self, scenario: Scenario) -> SessionResult:
        card, _ = self.cards[scenario.card]
        apply(scenario, Customer(self.reader, self.pinpad, self.dispenser), card)
        result = await self.terminal.serve_one()
        assert result is not None, self.terminal.out_of_service_reason
        return result

    def balance(self, account: str) -> int:
        return self.host.authoriser.ledger.balance(account).ledger


RigRunner = Callable[[Callable[[Rig], Awaitable[T]]], T]


@pytest.fixture
def with_rig(tmp_path: Path) -> Callable[..., Any]:
    """``with_rig(async_fn)`` runs ``async_fn(rig)`` with a live host and terminal."""

    def run(body: Callable[[Rig], Awaitable[T]]) -> T:
        async def main() -> T:
            host = build_host(tmp_path / "host.db", DEMO_SEED, port=0, demo=True, pki=None)
            # Sessions here are about flows, not about the wire: no sampled snapshot uploads,
            # which would drain the SAF at a random session's end (tests/security/
            # test_duress_wire.py covers the sampling).
            settings = host.authoriser.settings
            host.authoriser.settings = dataclasses.replace(settings, evidence_sample=0.0)
            port = await host.start()
            clock = ManualClock(dt.datetime.now(dt.UTC))
            terminal = demo_terminal(tmp_path, port, DEMO_SEED, clock, tls=None)
            assert terminal.start()
            assert await terminal.ensure_signed_on(), terminal.out_of_service_reason
            rig = Rig(host, terminal, clock, seed_cards(DEMO_SEED))
            try:
                return await body(rig)
            finally:
                await rig.terminal.close()  # a test may have replaced (restarted) it
                await host.stop()
                host.authoriser.conn.close()

        return asyncio.run(main())

    return run


# -- the host's ledger on both engines (tests/host, tests/cardless) ----------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL server for the session (each test gets its own database)."""
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def host_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Where the host's ledger lives: a fresh SQLite file, or a fresh PostgreSQL database
    (the host's tests run against both engines), dropped afterwards."""
    if request.param == "sqlite":
        yield tmp_path / "host.db"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)
