"""BER-TLV parser/encoder: EMV examples, each malformation with its offset, and hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atm_common.errors import RemoteProtocolError
from terminal.drivers.card_reader.tlv import (
    Tlv,
    TlvError,
    encode,
    encode_length,
    encode_tag,
    find,
    parse,
    parse_dol,
    walk,
)

# An FCI as a card answers SELECT PSE: 6F { 84 DF name, A5 { 88 SFI, 5F2D language } }
FCI = bytes.fromhex("6F1A840E315041592E5359532E4444463031A5088801015F2D02656E")


def test_fci_parses_into_a_tree() -> None:
    (fci,) = parse(FCI)
    assert fci.tag == 0x6F and fci.constructed
    assert [c.tag for c in fci.children or ()] == [0x84, 0xA5]
    assert find([fci], 0x84) == Tlv(0x84, b"1PAY.SYS.DDF01")
    sfi = find([fci], 0x6F, 0xA5, 0x88)
    assert sfi is not None and sfi.value == b"\x01" and sfi.offset == 20
    lang = fci.find(0xA5, 0x5F2D)
    assert lang is not None and lang.value == b"en"
    assert find([fci], 0x6F, 0x88) is None  # 88 is not a direct child of 6F
    assert find([fci], 0x9F38) is None
    assert [t.tag for t in walk([fci])] == [0x6F, 0x84, 0xA5, 0x88, 0x5F2D]


def test_multi_byte_tags_and_long_lengths() -> None:
    value = bytes(200)
    data = encode(0x9F1F, value) + encode(0xDF8101, b"\x01")
    assert data[:5] == bytes.fromhex("9F1F81C8") + b"\x00"
    objects = parse(data)
    assert [(o.tag, len(o.value)) for o in objects] == [(0x9F1F, 200), (0xDF8101, 1)]
    assert parse(bytes.fromhex("5A820003112233"))[0].value == bytes.fromhex("112233")


def test_padding_between_objects_is_skipped() -> None:
    assert [o.tag for o in parse(bytes.fromhex("00005A0112000057011200"))] == [0x5A, 0x57]


def test_encode_round_trips_a_template() -> None:
    record = encode(0x70, encode(0x5A, b"\x47\x61") + encode(0x5F24, b"\x30\x12\x31"))
    (parsed,) = parse(record)
    assert parsed.encode() == record
    assert encode(0x70, parsed.children or ()) == record


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"), (65536, "83010000")],
)
def test_length_encoding_is_minimal(length: int, encoded: str) -> None:
    assert encode_length(length).hex().upper() == encoded


def test_encode_refuses_impossible_values() -> None:
    with pytest.raises(ValueError):
        encode_tag(0)
    with pytest.raises(ValueError):
        encode_length(-1)


@pytest.mark.parametrize(
    ("hex_data", "offset", "words"),
    [
        ("5A81", 1, "truncated length"),
        ("5A0512", 0, "runs past"),
        ("6F80", 1, "indefinite"),
        ("5FFFFFFF01", 0, "longer than 4"),
        ("9F", 0, "truncated multi-byte tag"),
        ("9F81", 0, "truncated multi-byte tag"),
        ("5A", 1, "length expected"),
        ("5A8501000000", 1, "too long"),
        ("6F045A0A1234", 2, "runs past"),  # error inside a template: absolute offset
        ("70035A01129F", 5, "truncated multi-byte tag"),  # after a good template
    ],
)
def test_malformed_input_names_the_offset(hex_data: str, offset: int, words: str) -> None:
    with pytest.raises(TlvError) as info:
        parse(bytes.fromhex(hex_data))
    assert info.value.offset == offset
    assert words in str(info.value)
    assert isinstance(info.value, RemoteProtocolError)


def test_nesting_depth_is_bounded() -> None:
    data = b""
    for _ in range(40):
        data = encode(0x70, data)
    with pytest.raises(TlvError, match="nested deeper"):
        parse(data)


def test_dol_is_tags_and_lengths() -> None:
    assert parse_dol(bytes.fromhex("9F66049F02069F37045F2A02")) == [
        (0x9F66, 4),
        (0x9F02, 6),
        (0x9F37, 4),
        (0x5F2A, 2),
    ]
    with pytest.raises(TlvError):
        parse_dol(bytes.fromhex("9F66"))


# -- hypothesis ----------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_random_bytes_give_objects_or_tlv_error(data: bytes) -> None:
    try:
        objects = parse(data)
    except TlvError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    for obj in walk(objects):
        assert obj.tag > 0


def _tag(constructed: bool) -> st.SearchStrategy[int]:
    flag = 0x20 if constructed else 0x00
    cls = st.sampled_from([0x00, 0x40, 0x80, 0xC0])
    one = st.builds(lambda c, n: c | flag | n, cls, st.integers(1, 0x1E))
    two = st.builds(lambda c, b: ((c | flag | 0x1F) << 8) | b, cls, st.integers(0x1F, 0x7F))
    three = st.builds(
        lambda c, b, d: ((c | flag | 0x1F) << 16) | (b << 8) | d,
        cls,
        st.integers(0x81, 0xFF),
        st.integers(0x00, 0x7F),
    )
    return st.one_of(one, two, three)


Tree = tuple[int, Any]
primitive = st.tuples(_tag(False), st.binary(max_size=300))
trees: st.SearchStrategy[Tree] = st.recursive(
    primitive,
    lambda kids: st.tuples(_tag(True), st.lists(kids, max_size=4)),
    max_leaves=12,
)


def _encode_tree(tree: Tree) -> bytes:
    tag, body = tree
    if isinstance(body, bytes):
        return encode(tag, body)
    return encode(tag, b"".join(_encode_tree(child) for child in body))


def _as_tree(obj: Tlv) -> Tree:
    if obj.children is None:
        return obj.tag, obj.value
    return obj.tag, [_as_tree(child) for child in obj.children]


@given(st.lists(trees, max_size=4))
def test_encode_then_parse_round_trips(forest: list[Tree]) -> None:
    data = b"".join(_encode_tree(tree) for tree in forest)
    parsed = parse(data)
    assert [_as_tree(obj) for obj in parsed] == forest
    assert b"".join(obj.encode() for obj in parsed) == data
