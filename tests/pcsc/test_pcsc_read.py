"""EMV reads of seed cards through pcscd, and every broken-card mode with its reason."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest

from atm_common.clock import ManualClock
from terminal.drivers.card_reader.base import CardUnreadable
from terminal.drivers.card_reader.pcsc import PcscCardReader

from .conftest import StartCard, seed_card

pytestmark = pytest.mark.pcsc

ALICE, BOB, DAVE_OLD = "4761739001010010", "5413330089010012", "4761739001010044"


@pytest.mark.parametrize(
    ("pan", "expiry", "name"),
    [(ALICE, "3012", "ALICE ARDEN"), (BOB, "2911", "BOB BRANDT")],
)
def test_seed_card_reads_in_full(
    reader: PcscCardReader, cards: StartCard, pan: str, expiry: str, name: str
) -> None:
    cards(seed_card(pan)).insert()
    assert reader.wait_for_card(5.0)
    card = reader.read_card()
    assert (card.pan, card.expiry, card.name, card.service_code) == (pan, expiry, name, "201")
    assert card.track2 == f"{pan}={expiry}2010000000000000"
    assert not card.expires_before(dt.date(2026, 1, 1))


def test_the_same_card_reads_twice(reader: PcscCardReader, cards: StartCard) -> None:
    cards().insert()
    assert reader.wait_for_card(5.0)
    assert reader.read_card().pan == reader.read_card().pan == ALICE


def test_expired_seed_card_reads_but_is_flagged(reader: PcscCardReader, cards: StartCard) -> None:
    cards(seed_card(DAVE_OLD)).insert()
    assert reader.wait_for_card(5.0)
    card = reader.read_card()
    assert card.expiry == "2401" and card.expires_before(dt.date(2026, 1, 1))


def test_expired_mode_reads_but_is_flagged(reader: PcscCardReader, cards: StartCard) -> None:
    cards(mode="expired").insert()
    assert reader.wait_for_card(5.0)
    card = reader.read_card()
    assert card.expiry == "2001" and card.expires_before(dt.date(2026, 1, 1))


def test_read_without_a_card_is_unreadable(reader: PcscCardReader) -> None:
    with pytest.raises(CardUnreadable, match="no card in the reader"):
        reader.read_card()


def test_mute_card_fails_within_the_read_timeout_naming_the_step(
    reader: PcscCardReader, cards: StartCard, clock: ManualClock
) -> None:
    card = cards(mode="mute")
    card.insert()
    assert reader.wait_for_card(5.0)  # the ATR came: the chip answers reset only
    started = time.monotonic()
    with pytest.raises(CardUnreadable) as info:
        reader.read_card()
    assert time.monotonic() - started < 3.0
    assert clock.monotonic() == pytest.approx(1.5)
    assert "SELECT PSE" in str(info.value) and "mute" in str(info.value)
    with pytest.raises(CardUnreadable, match="still not answering"):
        reader.read_card()
    card.remove()  # frees pcscd's blocked transmit
    assert reader.eject(5.0) is True
    good = cards(seed_card(BOB))
    good.insert()
    assert reader.wait_for_card(5.0)
    assert reader.read_card().pan == BOB


def test_dead_card_is_never_seen(reader: PcscCardReader, cards: StartCard) -> None:
    card = cards(mode="dead")
    card.insert(wait_seen=False)  # connected, but it never answers GET ATR
    assert reader.wait_for_card(1.0) is False
    card.remove(wait_gone=False)
    good = cards()
    good.insert()
    assert reader.wait_for_card(5.0) and reader.read_card().pan == ALICE


def test_bad_tlv_is_unreadable_with_the_offset(reader: PcscCardReader, cards: StartCard) -> None:
    cards(mode="bad_tlv").insert()
    assert reader.wait_for_card(5.0)
    with pytest.raises(CardUnreadable) as info:
        reader.read_card()
    assert "malformed TLV in READ RECORD SFI 2 record 1" in str(info.value)
    assert "offset 2" in str(info.value)


def test_unknown_aid_reports_6a82(reader: PcscCardReader, cards: StartCard) -> None:
    cards(mode="unknown_aid").insert()
    assert reader.wait_for_card(5.0)
    with pytest.raises(CardUnreadable) as info:
        reader.read_card()
    assert "no supported application" in str(info.value)
    assert "6A82 file or application not found" in str(info.value)


@pytest.mark.parametrize("after", ["1", "6"])
def test_card_removed_mid_read_is_unreadable(
    reader: PcscCardReader, cards: StartCard, after: str
) -> None:
    card = cards(mode="removed_mid_read", remove_after=after)
    card.insert()
    assert reader.wait_for_card(5.0)
    with pytest.raises(CardUnreadable) as info:
        reader.read_card()
    assert "removed" in str(info.value)
    assert card.wait_event("removed") == "removed"
    assert reader.eject(5.0) is True


def test_pan_is_only_ever_logged_masked(
    reader: PcscCardReader, cards: StartCard, caplog: pytest.LogCaptureFixture
) -> None:
    cards().insert()
    with caplog.at_level(logging.DEBUG):
        assert reader.wait_for_card(5.0)
        card = reader.read_card()
        reader.retain()
    assert "476173******0010" in caplog.text
    assert ALICE not in caplog.text
    assert card.track2 not in caplog.text
    assert ALICE not in repr(card) and ALICE not in repr(reader)
