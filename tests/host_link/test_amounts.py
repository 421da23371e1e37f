"""Field 54, additional amounts."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_link.amounts import AmountType, decode_amounts, encode_amounts
from host_link.codec import decode, encode
from host_link.errors import CodecError


def test_encode_layout() -> None:
    text = encode_amounts({AmountType.LEDGER_BALANCE: 250_000}, "840")
    assert text == "0001840C000000250000"
    assert encode_amounts({AmountType.AVAILABLE_BALANCE: -15}, "978", "10") == (
        "1002978D000000000015"
    )


def test_round_trip_three_amounts() -> None:
    amounts = {
        AmountType.LEDGER_BALANCE: 250_000,
        AmountType.AVAILABLE_BALANCE: -1_200,
        AmountType.WITHDRAWAL_LIMIT: 0,
    }
    text = encode_amounts(amounts, "840")
    assert len(text) == 60
    assert decode_amounts(text) == amounts


def test_round_trip_through_the_codec() -> None:
    amounts = {AmountType.LEDGER_BALANCE: 1, AmountType.WITHDRAWAL_LIMIT: 999_999_999_999}
    msg = {"t": "0110", "11": "000001", "39": "00", "54": encode_amounts(amounts, "840")}
    assert decode_amounts(decode(encode(msg))["54"]) == amounts


def test_empty_field() -> None:
    assert decode_amounts("") == {}
    assert encode_amounts({}, "840") == ""


def test_unknown_amount_types_are_skipped() -> None:
    text = "0001840C000000000100" + "0057840C000000000200"
    assert decode_amounts(text) == {AmountType.LEDGER_BALANCE: 100}


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0001840C00000000010", None),  # 19 characters
        ("0001840C000000000100" + "00", None),
        ("0001840X000000000100", 0),  # bad sign
        ("0001840C0000000001A0", 0),  # non-digit amount
        ("0001840C000000000100" + "0002840C00000-000100", 20),
        ("0001840C          10", 0),
    ],
)
def test_malformed_raises_codec_error(text: str, position: int | None) -> None:
    with pytest.raises(CodecError) as info:
        decode_amounts(text)
    assert info.value.field == "54"
    assert info.value.position == position


@given(
    st.dictionaries(
        st.sampled_from(list(AmountType)), st.integers(-(10**12) + 1, 10**12 - 1), max_size=3
    ),
    st.text("0123456789", min_size=3, max_size=3),
)
def test_round_trip_property(amounts: dict[AmountType, int], currency: str) -> None:
    text = encode_amounts(amounts, currency)
    assert len(text) == 20 * len(amounts)
    assert decode_amounts(text) == amounts


@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
def test_ascii_garbage_raises_only_codec_error(text: str) -> None:
    with contextlib.suppress(CodecError):
        decode_amounts(text)


def test_unicode_digit_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_amounts("0001840C00000000010²")
