"""Card reader contract: insert, read, eject (taken / not taken), retain, mute cards."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError, LocalProtocolError
from terminal.drivers.card_reader.base import CardData, CardReader, CardUnreadable
from terminal.drivers.card_reader.sim import DEFAULT_TEST_CARD, SimCardReader

CARD = CardData(
    pan="5413330089604111",
    expiry="2812",
    track2="5413330089604111=28122010000000000000",
    name="DOE/JANE",
    service_code="201",
)

Rig = tuple[CardReader, Any]


def test_no_card_times_out_on_the_clock(card_rig: Rig, clock: ManualClock) -> None:
    reader, _ = card_rig
    start = clock.monotonic()
    assert reader.wait_for_card(timeout=5.0) is False
    assert clock.monotonic() - start == pytest.approx(5.0)


def test_inserted_card_is_found_and_read(card_rig: Rig, clock: ManualClock) -> None:
    reader, customer = card_rig
    customer.insert(CARD)
    start = clock.monotonic()
    assert reader.wait_for_card(timeout=5.0) is True
    assert clock.monotonic() == start
    card = reader.read_card()
    assert (card.pan, card.expiry, card.track2, card.name, card.service_code) == (
        CARD.pan,
        CARD.expiry,
        CARD.track2,
        CARD.name,
        CARD.service_code,
    )


def test_read_logs_only_the_masked_pan(card_rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    reader, customer = card_rig
    customer.insert(CARD)
    with caplog.at_level(logging.DEBUG):
        reader.read_card()
    assert "541333******4111" in caplog.text
    assert CARD.pan not in caplog.text
    assert CARD.pan not in repr(CARD)


def test_eject_taken_empties_the_reader(card_rig: Rig, clock: ManualClock) -> None:
    reader, customer = card_rig
    customer.insert(CARD)
    assert reader.wait_for_card(1.0)
    start = clock.monotonic()
    assert reader.eject(take_timeout=30.0) is True
    assert clock.monotonic() == start
    assert reader.wait_for_card(timeout=1.0) is False
    assert reader.retained_count == 0


def test_eject_not_taken_waits_then_retain_captures(card_rig: Rig, clock: ManualClock) -> None:
    reader, customer = card_rig
    customer.insert(CARD)
    customer.script_take_card(False)
    start = clock.monotonic()
    assert reader.eject(take_timeout=30.0) is False
    assert clock.monotonic() - start == pytest.approx(30.0)
    assert reader.wait_for_card(timeout=0.0) is True  # still in the throat
    reader.retain()
    assert reader.retained_count == 1
    assert reader.wait_for_card(timeout=1.0) is False


def test_take_decisions_are_consumed_in_order(card_rig: Rig) -> None:
    reader, customer = card_rig
    customer.insert(CARD)
    customer.script_take_card(False)
    customer.script_take_card(True)
    assert reader.eject(take_timeout=10.0) is False
    assert reader.eject(take_timeout=10.0) is True
    assert reader.wait_for_card(timeout=0.0) is False


def test_retain_after_read_counts_each_card(card_rig: Rig) -> None:
    reader, customer = card_rig
    for expected in (1, 2):
        customer.insert(CARD)
        reader.read_card()
        reader.retain()
        assert reader.retained_count == expected


def test_unreadable_card_names_the_reason(card_rig: Rig) -> None:
    reader, customer = card_rig
    customer.insert(unreadable="chip mute after ATR")
    assert reader.wait_for_card(timeout=1.0) is True
    with pytest.raises(CardUnreadable) as info:
        reader.read_card()
    assert "chip mute after ATR" in str(info.value)
    assert info.value.device == "card_reader"
    assert reader.eject(take_timeout=10.0) is True  # a mute card can still be returned


# -- sim backend specifics ---------------------------------------------------------------


def test_sim_queued_cards_arrive_in_order(clock: ManualClock) -> None:
    other = {"pan": "4111111111111111", "expiry": "2701"}
    with SimCardReader(clock, cards=[CARD, other]) as reader:
        assert reader.queued == 2
        assert reader.wait_for_card(1.0) and reader.read_card().pan == CARD.pan
        reader.eject(5.0)
        assert reader.wait_for_card(1.0) and reader.read_card().pan == other["pan"]
        reader.eject(5.0)
        assert reader.wait_for_card(1.0) is False
        assert clock.monotonic() == pytest.approx(1.0)


def test_sim_bare_insert_uses_the_test_card(clock: ManualClock) -> None:
    with SimCardReader(clock) as reader:
        reader.insert()
        assert reader.card_present
        assert reader.read_card() == DEFAULT_TEST_CARD


def test_sim_refuses_out_of_sequence_actions(clock: ManualClock) -> None:
    with SimCardReader(clock) as reader:
        with pytest.raises(CardUnreadable, match="no card"):
            reader.read_card()
        with pytest.raises(LocalProtocolError):
            reader.eject(1.0)
        with pytest.raises(LocalProtocolError):
            reader.retain()
        reader.insert(CARD)
        with pytest.raises(LocalProtocolError, match="already"):
            reader.insert(CARD)


def test_sim_retained_keeps_the_cards(clock: ManualClock) -> None:
    with SimCardReader(clock) as reader:
        reader.insert(CARD)
        reader.retain()
        reader.insert(unreadable="bent")
        reader.retain()
        assert reader.retained == (CARD, None)
        assert CARD.pan not in repr(reader)


def test_sim_bad_card_config_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        SimCardReader(cards=[{"pan": "4111111111111111"}])
    assert info.value.key == "devices.card_reader.cards[0]"
