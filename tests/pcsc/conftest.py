"""A real pcscd with vpcd readers in a private network namespace, for the whole session.

Never skipped (principle 10): a missing tool, a foreign pcscd or a missing privilege fails
the tests with the reason. Each test gets its cards as ``vcard --control`` processes on
the ``cards`` fixture and a :class:`PcscCardReader` on slot ``Virtual PCD 00 00``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from sim.devices.pcsc_env import CardProcess, PcscEnv, PcscEnvError, wait_reader_state
from sim.devices.vcard import CardProfile, load_seed_card
from terminal.drivers.card_reader.pcsc import PcscCardReader

SEED = Path(__file__).resolve().parents[2] / "sim" / "data" / "demo-seed.toml"
SLOT0, SLOT1 = 35963, 35964
READER0 = "Virtual PCD 00 00"

StartCard = Callable[..., CardProcess]


def seed_card(pan: str) -> CardProfile:
    return load_seed_card(SEED, pan)


# Package scope: pcscd is one per machine, and the end-to-end demo over PC/SC (outside
# this package) starts its own; this one must be gone by then.
@pytest.fixture(scope="package")
def pcsc_env() -> Iterator[PcscEnv]:
    env = PcscEnv()
    try:
        env.start()
    except PcscEnvError as exc:
        pytest.fail(f"PC/SC test environment: {exc}", pytrace=False)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def env(pcsc_env: PcscEnv) -> Iterator[PcscEnv]:
    """The session environment with pcscd running (a test may stop and restart it)."""
    pcsc_env.start_pcscd()
    yield pcsc_env
    pcsc_env.start_pcscd()


@pytest.fixture
def cards(env: PcscEnv) -> Iterator[StartCard]:
    """``cards(profile, port=SLOT0, mode="normal")`` -> a card process, not yet inserted."""
    started: list[CardProcess] = []

    def start(
        profile: CardProfile | None = None, port: int = SLOT0, mode: str = "normal", **extra: str
    ) -> CardProcess:
        card = env.start_card(profile or seed_card("4761739001010010"), port, mode, **extra)
        started.append(card)
        return card

    yield start
    for card in started:
        card.stop()
        env.cards.remove(card)
    if env.pcscd is not None:  # the next test must find its slots empty
        for reader in {card.reader for card in started}:
            wait_reader_state(reader, present=False)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def reader(env: PcscEnv, clock: ManualClock) -> Iterator[PcscCardReader]:
    device = PcscCardReader(READER0, clock, read_timeout=1.5, poll_interval=0.2)
    device.open()
    yield device
    device.close()
