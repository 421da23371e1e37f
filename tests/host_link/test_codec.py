"""ISO 8583 codec: round trips, errors with field and position, masking, properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atm_common.errors import RemoteProtocolError
from host_link.codec import Message, decode, describe, encode, mask_value
from host_link.errors import CodecError
from host_link.spec import SENSITIVE_FIELDS, SPEC

PAN = "4761739001010010"


def financial(auth: Message) -> Message:
    return auth | {"t": "0200", "3": "010000", "4": "000000020000", "11": "000043"}


def reversal() -> Message:
    return {
        "t": "0400",
        "3": "010000",
        "4": "000000020000",
        "7": "0101120005",
        "11": "000044",
        "12": "120005",
        "13": "0101",
        "32": "100001",
        "41": "ATM00001",
        "49": "840",
        "90": "0200000043010112000000000100001" + "0" * 11,
        "95": "000000005000" + "0" * 30,
    }


def network_response() -> Message:
    return {
        "t": "0810",
        "7": "0101120000",
        "11": "000001",
        "39": "00",
        "41": "ATM00001",
        "70": "301",
    }


def test_round_trip_0100(auth_request: Message) -> None:
    wire = encode(auth_request)
    assert wire.startswith(b"0100")
    assert decode(wire) == auth_request


def test_round_trip_0200(auth_request: Message) -> None:
    msg = financial(auth_request)
    assert decode(encode(msg)) == msg


def test_round_trip_0400_with_secondary_bitmap() -> None:
    msg = reversal()
    wire = encode(msg)
    assert len(reversal()["90"]) == 42
    # Bit 1 of the primary bitmap announces the secondary bitmap (fields 90, 95).
    assert int(wire[4:5], 16) & 0x8
    assert decode(wire) == msg


def test_round_trip_0810() -> None:
    msg = network_response()
    wire = encode(msg)
    # Bits 1, 7, 11, 39, 41 in the primary bitmap; 70 in the secondary.
    assert wire == (
        b"0810" + b"8220000002800000" + b"0400000000000000"
        b"0101120000" + b"000001" + b"00" + b"ATM00001" + b"301"
    )
    assert decode(wire) == msg


def test_encode_does_not_modify_its_argument(auth_request: Message) -> None:
    before = dict(auth_request)
    encode(auth_request)
    assert auth_request == before
    assert "p" not in auth_request


def test_bitmap_keys_in_the_input_are_ignored(auth_request: Message) -> None:
    assert encode(auth_request | {"p": "garbage", "1": "junk"}) == encode(auth_request)


def test_decode_returns_no_bitmap_keys(auth_request: Message) -> None:
    decoded = decode(encode(auth_request | {"70": "301"}))
    assert "p" not in decoded and "1" not in decoded


def test_lllvar_fields_round_trip() -> None:
    msg = {"t": "0200", "11": "000001", "54": "0001840C000000010000", "62": "L" * 999}
    assert decode(encode(msg)) == msg


# -- decode errors carry field and position -----------------------------------------------


def error_of(data: bytes) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode(data)
    return info.value


def test_truncated_message(auth_request: Message) -> None:
    wire = encode(auth_request)
    err = error_of(wire[:-5])
    assert err.field == "52"
    assert err.position == len(wire) - 16
    assert "field 52" in str(err) and f"byte {err.position}" in str(err)


def test_truncated_inside_fixed_field(auth_request: Message) -> None:
    wire = encode(auth_request)
    cut = wire.index(b"ATM00001") + 4
    err = error_of(wire[:cut])
    assert err.field == "41"
    assert err.position == cut - 4


def test_truncated_mti() -> None:
    err = error_of(b"02")
    assert (err.field, err.position) == ("t", 0)


def test_empty_input() -> None:
    err = error_of(b"")
    assert err.field == "t"


def test_non_hex_bitmap(auth_request: Message) -> None:
    wire = encode(auth_request)
    err = error_of(wire[:4] + b"ZZ" + wire[6:])
    assert (err.field, err.position) == ("p", 4)


def test_non_numeric_length(auth_request: Message) -> None:
    wire = encode(auth_request)
    assert wire[20:22] == b"16"  # field 2's LL length
    err = error_of(wire[:20] + b"1X" + wire[22:])
    assert (err.field, err.position) == ("2", 20)


def test_length_too_large(auth_request: Message) -> None:
    wire = encode(auth_request)
    err = error_of(wire[:20] + b"25" + wire[22:])
    assert err.field == "2"
    assert err.position == 20


def test_non_digit_mti(auth_request: Message) -> None:
    wire = encode(auth_request)
    err = error_of(b"AB00" + wire[4:])
    assert (err.field, err.position) == ("t", 0)


def test_extra_data(auth_request: Message) -> None:
    wire = encode(auth_request)
    err = error_of(wire + b"XYZ")
    assert err.position == len(wire)


def test_non_ascii_data(auth_request: Message) -> None:
    wire = bytearray(encode(auth_request))
    at = wire.index(b"Main Street")
    wire[at] = 0xC3
    err = error_of(bytes(wire))
    assert err.field == "43"
    assert err.position == at


def test_codec_error_is_a_remote_protocol_error() -> None:
    assert issubclass(CodecError, RemoteProtocolError)


def test_decode_error_does_not_echo_the_pan(auth_request: Message) -> None:
    wire = encode(auth_request)
    # Declare field 2 as 19 long: it swallows the following bytes.
    for bad in (wire[:20] + b"19" + wire[22:], wire[:30]):
        err = error_of(bad)
        assert PAN not in str(err)
        assert PAN[:12] not in str(err)


# -- encode errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("2", "4" * 20), ("3", "01"), ("41", "ATM1"), ("43", "München".ljust(40)), ("52", "ABC")],
)
def test_encode_errors_name_the_field(auth_request: Message, field: str, value: str) -> None:
    with pytest.raises(CodecError) as info:
        encode(auth_request | {field: value})
    assert info.value.field == field
    if field in SENSITIVE_FIELDS:
        assert value not in str(info.value)


def test_encode_without_mti(auth_request: Message) -> None:
    msg = dict(auth_request)
    del msg["t"]
    with pytest.raises(CodecError) as info:
        encode(msg)
    assert info.value.field == "t"


def test_encode_field_out_of_range() -> None:
    with pytest.raises(CodecError):
        encode({"t": "0800", "200": "x"})


def test_encode_non_string_value() -> None:
    with pytest.raises(CodecError) as info:
        encode({"t": "0800", "11": 1})  # type: ignore[dict-item]
    assert info.value.field == "11"


# -- describe masks what must not be logged ------------------------------------------------


def test_describe_masks_sensitive_fields(auth_request: Message) -> None:
    msg = auth_request | {"64": "0123456789ABCDEF", "53": "FFFF9876543210E0"}
    text = describe(msg)
    assert PAN not in text
    assert "476173******0010" in text
    assert auth_request["52"] not in text
    assert "0123456789ABCDEF" not in text
    assert "FFFF9876543210E0" not in text
    assert "30121010000000000" not in text  # track 2 after the separator
    assert "'476173******0010=****'" in text
    assert "<16 chars>" in text
    # Non-sensitive fields stay readable.
    assert "ATM00001" in text and "'310000'" in text
    assert text.startswith("<0100 ")


def test_describe_orders_fields_numerically() -> None:
    text = describe({"t": "0800", "70": "301", "7": "0101120000", "11": "000001"})
    assert text.index("7=") < text.index("11=") < text.index("70=")


def test_mask_value_short_pan_is_fully_hidden() -> None:
    assert mask_value("2", "1234567890") == "*" * 10
    assert "123456" not in mask_value("35", "1234567890=2512")


def test_mask_value_128() -> None:
    assert mask_value("128", "00112233AABBCCDD") == "<16 chars>"


# -- properties -------------------------------------------------------------------------


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    try:
        decode(data)
    except CodecError as err:
        assert err.field is not None


@settings(max_examples=300)
@given(
    mti=st.sampled_from([b"0100", b"0200", b"0400", b"0800", b"0810"]),
    bitmap=st.text("0123456789ABCDEF", min_size=16, max_size=16),
    rest=st.binary(max_size=200),
)
def test_plausible_garbage_raises_only_codec_error(mti: bytes, bitmap: str, rest: bytes) -> None:
    """MTI and bitmap valid, the rest random: deeper decoder paths, still only CodecError."""
    with contextlib.suppress(CodecError):
        decode(mti + bitmap.encode() + rest)


PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
# The fields of our contract (docs/host-link.md); 65 is a bitmap in pyiso8583's model.
FIELDS = [
    "2", "3", "4", "7", "11", "12", "13", "14", "22", "32", "35", "37", "38", "39", "41",
    "42", "43", "49", "52", "53", "54", "62", "63", "64", "70", "90", "95", "128",
]  # fmt: skip


@st.composite
def field_value(draw: st.DrawFn, key: str) -> str:
    spec = SPEC[key]
    if spec["len_type"] == 0:
        return draw(st.text(PRINTABLE, min_size=spec["max_len"], max_size=spec["max_len"]))
    return draw(st.text(PRINTABLE, max_size=min(spec["max_len"], 60)))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    msg: Message = {"t": draw(st.text("0123456789", min_size=4, max_size=4))}
    keys = draw(
        st.lists(
            st.sampled_from(FIELDS),
            unique=True,
            max_size=20,
        )
    )
    for key in keys:
        msg[key] = draw(field_value(key))
    return msg


@settings(max_examples=300)
@given(messages())
def test_decode_encode_round_trip(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@settings(max_examples=200)
@given(messages(), st.data())
def test_any_truncation_raises_codec_error(msg: Message, data: st.DataObject) -> None:
    wire = encode(msg)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(CodecError) as info:
        decode(wire[:cut])
    assert info.value.field is not None
    if info.value.position is not None:
        assert 0 <= info.value.position <= cut
