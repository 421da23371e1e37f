"""EMV read logic without pcscd: the sans-I/O virtual card in-process, scripted status words,
track 2 derivation, the status word table, ATR parsing and vpcd framing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_link.errors import FramingError
from sim.devices.vcard import ATR, CardProfile, Disconnect, EmvCard, VpcdLink, load_seed_card
from terminal.drivers.card_reader.atr import AtrError, parse_atr
from terminal.drivers.card_reader.base import CardUnreadable
from terminal.drivers.card_reader.emv import (
    EmvReader,
    Transmit,
    card_from_records,
    command,
    describe_sw,
    pdol_data,
    with_le,
)
from terminal.drivers.card_reader.tlv import TlvError, encode, parse

ALICE = CardProfile("4761739001010010", "3012", "ALICE ARDEN")
BOB = CardProfile("5413330089010012", "2911", "BOB BRANDT")
SELECT_PSE = bytes.fromhex("00A404000E") + b"1PAY.SYS.DDF01"


def card_transmit(card: EmvCard, overrides: Mapping[bytes, bytes] | None = None) -> Transmit:
    """The in-process card as a ``transmit``; ``overrides`` answer APDUs by prefix."""
    sent: list[bytes] = []

    def transmit(apdu: bytes) -> tuple[bytes, int, int]:
        sent.append(apdu)
        for prefix, answer in (overrides or {}).items():
            if apdu.startswith(prefix):
                return answer[:-2], answer[-2], answer[-1]
        reply = card.receive(apdu)
        assert reply is not None, "card stayed silent"
        return reply[:-2], reply[-2], reply[-1]

    transmit.sent = sent  # type: ignore[attr-defined]
    return transmit


def test_good_read_through_pse_with_t0_chaining() -> None:
    steps: list[str] = []
    transmit = card_transmit(EmvCard(ALICE))
    result = EmvReader(transmit, on_step=steps.append).read()
    card = result.card
    assert (card.pan, card.expiry, card.name, card.service_code) == (
        "4761739001010010",
        "3012",
        "ALICE ARDEN",
        "201",
    )
    assert card.track2 == "4761739001010010=30122010000000000000"
    assert (result.aid, result.label, result.selected_by) == ("A0000000031010", "VISA", "PSE")
    assert steps[0] == "SELECT PSE" and "GET PROCESSING OPTIONS" in steps
    sent: list[bytes] = transmit.sent  # type: ignore[attr-defined]
    assert any(apdu[:2] == b"\x00\xc0" for apdu in sent)  # GET RESPONSE after 61xx
    assert any(apdu[:2] == b"\x00\xb2" and apdu[-1] != 0 for apdu in sent)  # resend after 6Cxx
    assert "4761739001010010" not in repr(result)


def test_mastercard_default_aid_from_the_pan() -> None:
    result = EmvReader(card_transmit(EmvCard(BOB))).read()
    assert result.aid == "A0000000041010" and result.card.pan == BOB.pan


def test_without_pse_the_aid_list_is_tried_in_order() -> None:
    transmit = card_transmit(EmvCard(BOB), {SELECT_PSE: b"\x6a\x82"})
    result = EmvReader(transmit).read()
    assert result.selected_by == "AID list" and result.aid == "A0000000041010"
    selects = [a[5:-1].hex().upper() for a in transmit.sent if a[:2] == b"\x00\xa4"]  # type: ignore[attr-defined]
    assert selects[:3] == ["315041592E5359532E4444463031", "A0000000031010", "A0000000032010"]


def test_unknown_application_names_each_select_and_sw() -> None:
    with pytest.raises(CardUnreadable) as info:
        EmvReader(card_transmit(EmvCard(ALICE, mode="unknown_aid"))).read()
    text = str(info.value)
    assert "no supported application" in text and "AID list" in text
    assert "SELECT AID A0000000031010: 6A82 file or application not found" in text


def test_bad_tlv_record_is_unreadable_with_the_offset() -> None:
    with pytest.raises(CardUnreadable) as info:
        EmvReader(card_transmit(EmvCard(ALICE, mode="bad_tlv"))).read()
    assert "malformed TLV in READ RECORD SFI 2 record 1" in str(info.value)
    assert "offset 2" in str(info.value)
    assert isinstance(info.value.__cause__, TlvError)


@pytest.mark.parametrize(
    ("prefix", "answer", "words"),
    [
        (SELECT_PSE, b"\x6a\x81", "card blocked"),
        (bytes.fromhex("00A4040007A0000000031010"), b"\x62\x83", "6283 selected file invalidated"),
        (bytes.fromhex("80A8"), b"\x69\x85", "GET PROCESSING OPTIONS failed: SW 6985"),
        (bytes.fromhex("00B2011400"), b"\x6a\x83", "READ RECORD SFI 2 record 1 failed: SW 6A83"),
        (bytes.fromhex("80A8"), b"\x6d\x00", "6D00 instruction not supported"),
    ],
)
def test_status_words_name_the_step(prefix: bytes, answer: bytes, words: str) -> None:
    with pytest.raises(CardUnreadable) as info:
        EmvReader(card_transmit(EmvCard(ALICE), {prefix: answer})).read()
    assert words in str(info.value)


def test_gpo_format_1_and_an_empty_pdol() -> None:
    fci = encode(0x6F, encode(0x84, bytes.fromhex("A0000000031010")) + encode(0xA5, b""))
    format1 = encode(0x80, bytes.fromhex("1980") + bytes.fromhex("10010200")) + b"\x90\x00"
    overrides = {
        SELECT_PSE: b"\x6a\x82",
        bytes.fromhex("00A4040007A0000000031010"): fci + b"\x90\x00",
        bytes.fromhex("80A80000028300"): format1,
    }
    result = EmvReader(card_transmit(EmvCard(ALICE), overrides)).read()
    assert result.card.pan == ALICE.pan


def test_endless_61xx_is_refused() -> None:
    with pytest.raises(CardUnreadable, match="keeps answering 6110"):
        EmvReader(lambda apdu: (b"", 0x61, 0x10)).read()


def test_track2_alone_gives_pan_expiry_and_service_code() -> None:
    records = parse(encode(0x70, encode(0x57, bytes.fromhex("4761739001010010D30121010000000F"))))
    card = card_from_records(records)
    assert (card.pan, card.expiry, card.service_code) == ("4761739001010010", "3012", "101")
    assert card.track2 == "4761739001010010=30121010000000"
    assert card.name == ""


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (encode(0x5F20, b"NOBODY"), "neither a PAN"),
        (encode(0x5A, bytes.fromhex("4761739001010010")), "no valid expiry"),
        (
            encode(0x5A, bytes.fromhex("4761739001010028"))
            + encode(0x57, bytes.fromhex("4761739001010010D3012201")),
            "disagree",
        ),
        (encode(0x57, bytes.fromhex("47617390")), "malformed"),
        (encode(0x5A, bytes.fromhex("47AB")), "not BCD"),
    ],
)
def test_inconsistent_records_are_unreadable(body: bytes, words: str) -> None:
    with pytest.raises(CardUnreadable, match=words):
        card_from_records(parse(encode(0x70, body)))


def test_expired_mode_reads_but_is_expired() -> None:
    card = EmvReader(card_transmit(EmvCard(ALICE, mode="expired"))).read().card
    assert card.expiry == "2001" and card.track2.startswith("4761739001010010=2001")
    assert card.expires_before(dt.date(2026, 1, 1))


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "9000 success"),
        (0x6A82, "6A82 file or application not found"),
        (0x63C2, "63C2 verification failed, 2 tries left"),
        (0x6E00, "6E00 class not supported"),
        (0x6112, "6112 18 more bytes available"),
        (0x6C20, "6C20 wrong Le, exact length is 32"),
        (0x6281, "6281 warning"),
        (0x9ABC, "9ABC unknown status"),
    ],
)
def test_status_word_table(sw: int, text: str) -> None:
    assert describe_sw(sw >> 8, sw & 0xFF) == text


def test_apdu_building_and_le_replacement() -> None:
    assert command(0x00, 0xB2, 1, 0x0C, le=0).hex() == "00b2010c00"
    case4 = command(0x00, 0xA4, 4, 0, b"\xa0\x00", le=0)
    assert case4.hex() == "00a4040002a00000"
    assert with_le(case4, 0x20).hex() == "00a4040002a00020"
    assert with_le(command(0x00, 0xB2, 1, 0x0C, le=0), 0x1A).hex() == "00b2010c1a"
    assert with_le(command(0x00, 0xA4, 4, 0, b"\xa0\x00"), 5).hex() == "00a4040002a00005"


def test_pdol_is_filled_with_zeros_or_given_values() -> None:
    pdol = bytes.fromhex("9F02065F2A02")
    assert pdol_data(pdol) == bytes(8)
    assert pdol_data(pdol, {0x5F2A: b"\x08\x40\xff"}) == bytes(6) + b"\x08\x40"


# -- ATR ------------------------------------------------------------------------------------


def test_our_virtual_card_atr() -> None:
    atr = parse_atr(ATR)
    assert (atr.convention, atr.protocols, atr.historical) == ("direct", (0,), b"ATMSIM01")
    assert atr.interface == {"TB1": 0x00, "TC1": 0x00} and atr.tck is None
    assert atr.as_dict()["historical_text"] == "ATMSIM01"


def test_t1_atr_with_a_checked_tck() -> None:
    atr = parse_atr(bytes.fromhex("3B8001" + "81"))
    assert atr.protocols == (1,) and atr.tck == 0x81 and atr.interface == {"TD1": 0x01}
    emv_t0 = parse_atr(bytes.fromhex("3B6500009C11010103"))
    assert emv_t0.historical == bytes.fromhex("9C11010103")


@pytest.mark.parametrize(
    ("hex_atr", "words"),
    [
        ("3B", "shorter"),
        ("3A00", "neither 3B nor 3F"),
        ("3B8001" + "80", "does not check"),
        ("3B8001", "TCK missing"),
        ("3B6500009C", "historical bytes announced"),
        ("3B000102", "trailing"),
        ("3B90", "TA1 missing"),
    ],
)
def test_malformed_atrs(hex_atr: str, words: str) -> None:
    with pytest.raises(AtrError, match=words):
        parse_atr(bytes.fromhex(hex_atr))


# -- the virtual card's own pieces ------------------------------------------------------------


def test_vpcd_framing_across_chunks() -> None:
    link = VpcdLink()
    stream = VpcdLink.frame(b"\x04") + VpcdLink.frame(SELECT_PSE)
    assert link.feed(stream[:1]) == []
    assert link.feed(stream[1:4]) == [b"\x04"]
    assert link.feed(stream[4:]) == [SELECT_PSE]
    assert VpcdLink.frame(b"\x90\x00") == b"\x00\x02\x90\x00"


def test_card_modes_on_the_link() -> None:
    assert EmvCard(ALICE).receive(b"\x04") == ATR
    assert EmvCard(ALICE, mode="mute").receive(b"\x04") == ATR
    assert EmvCard(ALICE, mode="mute").receive(SELECT_PSE) is None
    assert EmvCard(ALICE, mode="dead").receive(b"\x04") is None
    leaving = EmvCard(ALICE, mode="removed_mid_read", remove_after=1)
    assert leaving.receive(SELECT_PSE) == b"\x61\x1c"
    with pytest.raises(Disconnect):
        leaving.receive(SELECT_PSE)
    with pytest.raises(ValueError):
        EmvCard(ALICE, mode="bent")


def test_seed_cards_load_with_their_default_aid() -> None:
    seed = Path(__file__).resolve().parents[2] / "sim" / "data" / "demo-seed.toml"
    assert load_seed_card(seed, "4761739001010010").aid == "A0000000031010"
    bob = load_seed_card(seed, "5413330089010012")
    assert (bob.aid, bob.name, bob.expiry) == ("A0000000041010", "BOB BRANDT", "2911")
    with pytest.raises(KeyError):
        load_seed_card(seed, "4000000000000002")


def test_a_supervisor_card_of_the_seed_reads_like_any_card() -> None:
    """The demo's technician card (``[[supervisor_cards]]``) as a virtual EMV card."""
    seed = Path(__file__).resolve().parents[2] / "sim" / "data" / "demo-seed.toml"
    profile = load_seed_card(seed, "6009990000000026")
    card = EmvReader(card_transmit(EmvCard(profile))).read().card
    assert (card.pan, card.expiry) == ("6009990000000026", "3012")


@given(st.lists(st.binary(min_size=0, max_size=300), max_size=8), st.data())
def test_vpcd_link_round_trip_whatever_the_split(
    messages: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(VpcdLink.frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    link, got, last = VpcdLink(), [], 0
    for cut in [*cuts, len(stream)]:
        got += link.feed(stream[last:cut])
        last = cut
    assert got == messages


@given(st.binary(max_size=2000))
def test_vpcd_link_random_bytes_only_framing_errors(data: bytes) -> None:
    link = VpcdLink(max_message=300)
    try:
        for message in link.feed(data):
            assert len(message) <= 300
    except FramingError:
        pass


def test_vpcd_link_refuses_an_oversized_prefix_before_its_body() -> None:
    link = VpcdLink(max_message=300)
    with pytest.raises(FramingError, match="65535"):
        link.feed(b"\xff\xff")  # refused on the prefix alone: nothing buffered for it
