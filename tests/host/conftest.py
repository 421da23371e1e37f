from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from sim.host.storage.cluster import PgCluster
from tests.host.helpers import Host, Terminal, open_host


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


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def host(host_db: str | Path, clock: ManualClock) -> Iterator[Host]:
    h = open_host(host_db, clock)
    yield h
    h.conn.close()


@pytest.fixture
def terminal(host: Host, clock: ManualClock) -> Terminal:
    """The TDES demo terminal, signed on (key exchange done)."""
    t = Terminal(clock)
    t.key_exchange(host)
    return t
