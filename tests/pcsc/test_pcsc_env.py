"""The environment itself: one pcscd only, idempotent stop, the vcard CLI from the seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim.devices.pcsc_env import PcscEnv, PcscEnvError, live_pcscd_pids, wait_reader_state
from terminal.drivers.card_reader.pcsc import PcscCardReader

from .conftest import SEED

pytestmark = pytest.mark.pcsc


def test_namespace_is_private_and_pcscd_is_ours(env: PcscEnv) -> None:
    assert env.netns.startswith(f"/proc/{env.holder_pid}/ns/")
    assert env.pcscd is not None and live_pcscd_pids() == [env.pcscd.pid]


def test_a_second_environment_refuses_to_start(env: PcscEnv) -> None:
    other = PcscEnv()
    with pytest.raises(PcscEnvError, match="another pcscd is running"):
        other.start()
    other.stop()
    other.stop()  # idempotent, and it did not touch the running one
    assert env.pcscd is not None and env.pcscd.poll() is None


def test_stop_pcscd_twice_is_safe(env: PcscEnv) -> None:
    env.stop_pcscd()
    env.stop_pcscd()
    assert live_pcscd_pids() == []
    env.start_pcscd()
    env.start_pcscd()
    assert len(live_pcscd_pids()) == 1


def test_vcard_cli_serves_a_seed_card(env: PcscEnv) -> None:
    argv = [sys.executable, "-m", "sim.devices.vcard", "--port", "35964"]
    argv += ["--seed", str(SEED), "--pan", "5413330089010012"]
    proc = env.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_reader_state("Virtual PCD 00 01", present=True)
        with PcscCardReader("Virtual PCD 00 01") as reader:
            assert reader.wait_for_card(5.0)
            card = reader.read_card()
        assert (card.pan, card.expiry, card.name) == ("5413330089010012", "2911", "BOB BRANDT")
    finally:
        proc.terminate()
        proc.wait(10)
    wait_reader_state("Virtual PCD 00 01", present=False)
