"""Reader discovery, life cycle, insert/remove, ATR, eject and retain through a real pcscd."""

from __future__ import annotations

import threading
import time

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError, LocalProtocolError
from sim.devices.vcard import ATR
from terminal.drivers.base import DeviceStatus
from terminal.drivers.card_reader.base import CardUnreadable
from terminal.drivers.card_reader.pcsc import PcscCardReader
from terminal.errors import DeviceUnavailable

from .conftest import READER0, SLOT1, StartCard

pytestmark = pytest.mark.pcsc


def test_discovers_both_vpcd_slots(reader: PcscCardReader) -> None:
    assert reader.status() is DeviceStatus.OK
    assert reader.reader_name == READER0
    assert {"Virtual PCD 00 00", "Virtual PCD 00 01"} <= set(reader.readers())


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Virtual PCD", "Virtual PCD 00 00"),
        ("PCD 00 01", "Virtual PCD 00 01"),
        (r"0[1]$", "Virtual PCD 00 01"),
    ],
)
def test_reader_chosen_by_substring_or_regex(
    reader: PcscCardReader, pattern: str, expected: str
) -> None:
    with PcscCardReader(pattern) as device:
        assert device.reader_name == expected


def test_unknown_reader_is_offline_and_says_what_exists(reader: PcscCardReader) -> None:
    with PcscCardReader("Gemalto PC Twin") as device:
        assert device.status() is DeviceStatus.OFFLINE
        with pytest.raises(DeviceUnavailable) as info:
            device.wait_for_card(0.0)
        assert "Gemalto PC Twin" in str(info.value) and "Virtual PCD 00 00" in str(info.value)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        PcscCardReader(read_timeout=0)


def test_life_cycle_open_close_twice(reader: PcscCardReader) -> None:
    device = PcscCardReader(READER0)
    device.open()
    device.open()
    assert device.wait_for_card(0.0) is False
    device.close()
    device.close()
    assert device.status() is DeviceStatus.OFFLINE
    with pytest.raises(DeviceUnavailable):
        device.wait_for_card(0.0)


def test_no_card_times_out_on_the_clock(reader: PcscCardReader, clock: ManualClock) -> None:
    started = time.monotonic()
    assert reader.wait_for_card(timeout=0.6) is False
    assert clock.monotonic() == pytest.approx(0.6)
    assert time.monotonic() - started == pytest.approx(0.6, abs=0.3)


def test_insert_is_seen_with_its_atr(
    reader: PcscCardReader, cards: StartCard, clock: ManualClock
) -> None:
    card = cards()
    card.insert()
    assert reader.wait_for_card(timeout=5.0) is True
    assert clock.monotonic() == 0.0  # the card was already there: no wait
    assert reader.atr == ATR
    info = reader.atr_info()
    assert info is not None and info.protocols == (0,) and info.historical == b"ATMSIM01"


def test_insert_during_a_wait_ends_it(reader: PcscCardReader, cards: StartCard) -> None:
    card = cards()
    timer = threading.Timer(0.4, card.insert)
    timer.start()
    started = time.monotonic()
    try:
        assert reader.wait_for_card(timeout=10.0) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 5.0


def test_remove_then_wait_finds_nothing(reader: PcscCardReader, cards: StartCard) -> None:
    card = cards()
    card.insert()
    assert reader.wait_for_card(5.0)
    card.remove()
    assert reader.wait_for_card(0.3) is False
    card.insert()
    assert reader.wait_for_card(5.0) is True


def test_slots_are_independent(reader: PcscCardReader, cards: StartCard) -> None:
    cards(port=SLOT1).insert()
    assert reader.wait_for_card(0.3) is False
    with PcscCardReader("Virtual PCD 00 01") as other:
        assert other.wait_for_card(5.0) is True


def test_eject_waits_for_the_customer_to_pull_the_card(
    reader: PcscCardReader, cards: StartCard, clock: ManualClock
) -> None:
    card = cards()
    card.insert()
    assert reader.wait_for_card(5.0)
    timer = threading.Timer(0.5, card.remove)
    timer.start()
    try:
        assert reader.eject(take_timeout=10.0) is True
    finally:
        timer.join()
    assert clock.monotonic() < 10.0
    assert reader.wait_for_card(0.0) is False


def test_eject_not_taken_returns_false_after_the_timeout(
    reader: PcscCardReader, cards: StartCard, clock: ManualClock
) -> None:
    cards().insert()
    assert reader.wait_for_card(5.0)
    assert reader.eject(take_timeout=0.6) is False
    assert clock.monotonic() == pytest.approx(0.6)
    assert reader.wait_for_card(0.0) is True  # still in the slot


def test_eject_with_the_card_already_gone_is_taken(reader: PcscCardReader) -> None:
    assert reader.eject(take_timeout=5.0) is True


def test_motorised_eject_request_is_harmless_on_vpcd(cards: StartCard) -> None:
    card = cards()
    card.insert()
    with PcscCardReader(READER0, motorised=True) as device:
        assert device.wait_for_card(5.0)
        timer = threading.Timer(0.3, card.remove)
        timer.start()
        try:
            assert device.eject(take_timeout=10.0) is True
        finally:
            timer.join()


def test_retain_records_and_ignores_the_card_until_removed(
    reader: PcscCardReader, cards: StartCard
) -> None:
    card = cards()
    card.insert()
    assert reader.wait_for_card(5.0)
    reader.retain()
    assert reader.retained_count == 1
    assert reader.wait_for_card(0.3) is False  # no new session with a retained card
    with pytest.raises(CardUnreadable, match="retained"):
        reader.read_card()
    card.remove()
    card.insert()
    assert reader.wait_for_card(5.0) is True  # a card inserted again is a new card
    reader.read_card()
    reader.retain()
    assert reader.retained_count == 2


def test_retain_without_a_card_is_refused(reader: PcscCardReader) -> None:
    with pytest.raises(LocalProtocolError):
        reader.retain()
    assert reader.retained_count == 0
