from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from tests.host.helpers import Host, Terminal, open_host


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
