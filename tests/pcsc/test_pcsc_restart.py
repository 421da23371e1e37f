"""pcscd going away and coming back: OFFLINE / DeviceUnavailable meanwhile, never a crash."""

from __future__ import annotations

import threading
import time

import pytest

from sim.devices.pcsc_env import PcscEnv
from terminal.drivers.base import DeviceStatus
from terminal.drivers.card_reader.pcsc import PcscCardReader
from terminal.errors import DeviceUnavailable

from .conftest import READER0, StartCard

pytestmark = pytest.mark.pcsc


def test_pcscd_restart_is_survived(env: PcscEnv, reader: PcscCardReader, cards: StartCard) -> None:
    card = cards()
    card.insert()
    assert reader.wait_for_card(5.0) and reader.read_card()
    env.stop_pcscd()  # vpcd goes with it: the card is disconnected too
    assert card.wait_event("removed") == "removed"
    assert reader.status() is DeviceStatus.OFFLINE
    with pytest.raises(DeviceUnavailable, match=r"pcscd unavailable|NO_SERVICE"):
        reader.wait_for_card(1.0)
    with pytest.raises(DeviceUnavailable):
        reader.read_card()
    assert reader.status() is DeviceStatus.OFFLINE  # still, and still no crash
    env.start_pcscd()
    assert reader.status() is DeviceStatus.OK
    card.insert()
    assert reader.wait_for_card(5.0)
    assert reader.read_card().pan == "4761739001010010"


def test_pcscd_stopping_during_a_wait_ends_it(env: PcscEnv, reader: PcscCardReader) -> None:
    stopper = threading.Timer(0.4, env.stop_pcscd)
    stopper.start()
    started = time.monotonic()
    try:
        with pytest.raises(DeviceUnavailable):
            reader.wait_for_card(timeout=20.0)
    finally:
        stopper.join()
    assert time.monotonic() - started < 10.0
    env.start_pcscd()
    assert reader.wait_for_card(0.2) is False  # context re-established, no card


def test_reader_opened_while_pcscd_is_down_comes_up_later(env: PcscEnv) -> None:
    env.stop_pcscd()
    device = PcscCardReader(READER0)
    device.open()  # does not raise: the kiosk starts, the reader is OFFLINE
    try:
        assert device.status() is DeviceStatus.OFFLINE
        assert device.reader_name is None
        env.start_pcscd()
        assert device.status() is DeviceStatus.OK
        assert device.reader_name == READER0
    finally:
        device.close()
