"""ISO 9564 format 0 PIN blocks and IBM 3624 offsets (atm_common.crypto.pinblock)."""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from atm_common.crypto.pinblock import (
    clear_format0,
    encrypt_format0,
    ibm3624_offset,
    recover_pin_format0,
    verify_ibm3624,
)
from atm_common.crypto.tdes import decrypt_block, encrypt_block
from atm_common.errors import AtmError, RemoteProtocolError

KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
PVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "4012345678909"


def tdes_ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """Independent TDES straight from `cryptography` (K1K2 -> K1K2K1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cipher = Cipher(TripleDES(key + key[:8]), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def test_iso9564_format0_public_vector() -> None:
    assert clear_format0("1234", PAN).hex().upper() == "041274EDCBA9876F"


def test_dukpt_public_vector_encrypted_block() -> None:
    # ANSI X9.24-1:2009 first key: the PIN key with its PIN variant applied encrypts the
    # format 0 block of PIN 1234 / PAN 4012345678909 to 1B9C1845EB993A7A.
    derived = bytes.fromhex("042666B49184CFA368DE9628D0397BC9")
    variant = bytes.fromhex("00000000000000FF00000000000000FF")
    key = bytes(a ^ b for a, b in zip(derived, variant, strict=True))
    assert encrypt_format0("1234", PAN, key).hex().upper() == "1B9C1845EB993A7A"


def test_encrypted_block_is_tdes_of_the_clear_block() -> None:
    block = encrypt_format0("1234", PAN, KEY)
    assert len(block) == 8
    assert block == tdes_ecb(KEY, clear_format0("1234", PAN))
    assert block != clear_format0("1234", PAN)


def test_round_trip() -> None:
    block = encrypt_format0("1234", PAN, KEY)
    assert recover_pin_format0(block, PAN, KEY) == "1234"


def test_twelve_digit_pan() -> None:
    pan = "123456789012"
    # PAN field: 0000 + the 11 digits before the check digit, left-padded to 12.
    expected = bytes(
        a ^ b
        for a, b in zip(
            bytes.fromhex("044321FFFFFFFFFF"), bytes.fromhex("0000012345678901"), strict=True
        )
    )
    assert clear_format0("4321", pan) == expected
    block = encrypt_format0("4321", pan, KEY)
    assert recover_pin_format0(block, pan, KEY) == "4321"


def test_nineteen_digit_pan_uses_the_rightmost_twelve() -> None:
    pan = "6011000990139424123"
    same_tail = "999999" + pan[6:]
    assert clear_format0("1234", pan) == clear_format0("1234", same_tail)


def test_block_is_bound_to_the_pan() -> None:
    block = encrypt_format0("1234", PAN, KEY)
    with pytest.raises(RemoteProtocolError):
        recover_pin_format0(block, "4012345678917", KEY)


@pytest.mark.parametrize(
    "pin_field",
    [
        "141234FFFFFFFFFF",  # format 1, not 0
        "031234FFFFFFFFFF",  # PIN length 3
        "0D1234567890123F",  # PIN length 13
        "0F1234FFFFFFFFFF",  # PIN length 15 runs into the padding
        "0412A4FFFFFFFFFF",  # non-digit in the PIN
        "041234FFFFFFFFF0",  # padding is not all F
    ],
)
def test_bad_blocks_raise(pin_field: str) -> None:
    """A block that decrypts to a PIN field that is not a valid format 0 one is refused."""
    pan_field = bytes.fromhex("0000" + PAN[:-1][-12:])
    clear = bytes(a ^ b for a, b in zip(bytes.fromhex(pin_field), pan_field, strict=True))
    with pytest.raises(RemoteProtocolError):
        recover_pin_format0(tdes_ecb(KEY, clear), PAN, KEY)


def test_valid_constructed_block_is_accepted() -> None:
    """The construction used above gives the PIN back when the PIN field is valid."""
    pan_field = bytes.fromhex("0000" + PAN[:-1][-12:])
    clear = bytes(a ^ b for a, b in zip(bytes.fromhex("06123456FFFFFFFF"), pan_field, strict=True))
    assert recover_pin_format0(tdes_ecb(KEY, clear), PAN, KEY) == "123456"


@pytest.mark.parametrize("size", [0, 7, 9, 16])
def test_block_of_wrong_size_raises(size: int) -> None:
    with pytest.raises(RemoteProtocolError, match="8 bytes"):
        recover_pin_format0(b"\x00" * size, PAN, KEY)


def test_random_block_is_refused_or_decodes_to_digits() -> None:
    # A random 8-byte block almost never decodes; when it does, the result is a PIN.
    for i in range(200):
        block = bytes((i * 37 + j * 11) % 256 for j in range(8))
        try:
            pin = recover_pin_format0(block, PAN, KEY)
        except RemoteProtocolError:
            continue
        assert pin.isdigit() and 4 <= len(pin) <= 12


def test_errors_belong_to_the_tree() -> None:
    with pytest.raises(AtmError):
        recover_pin_format0(b"\x00" * 8, PAN, KEY)


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", ""])
def test_bad_pin_refused_when_building(pin: str) -> None:
    with pytest.raises(ValueError):
        clear_format0(pin, PAN)


@pytest.mark.parametrize("pan", ["12345678901", "12345678901234567890", "40123456789O9"])
def test_bad_pan_refused(pan: str) -> None:
    with pytest.raises(ValueError):
        clear_format0("1234", pan)


@given(
    pin=st.text("0123456789", min_size=4, max_size=12),
    pan=st.text("0123456789", min_size=12, max_size=19),
)
def test_round_trip_property(pin: str, pan: str) -> None:
    block = encrypt_format0(pin, pan, KEY)
    assert recover_pin_format0(block, pan, KEY) == pin
    assert decrypt_block(KEY, block) == clear_format0(pin, pan)


# -- IBM 3624 ---------------------------------------------------------------------------


def natural_pin(pan: str, pvk: bytes, length: int) -> str:
    """Independent IBM 3624 natural PIN: validation data = last 16 PAN digits, zero-padded."""
    cipher = tdes_ecb(pvk, bytes.fromhex(pan[-16:].rjust(16, "0"))).hex().upper()
    table = "0123456789012345"
    return "".join(table[int(c, 16)] for c in cipher)[:length]


def test_ibm3624_offset_matches_independent_computation() -> None:
    pan, pin = "4761739001010010", "1234"
    natural = natural_pin(pan, PVK, 4)
    expected = "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural, strict=True))
    assert ibm3624_offset(pin, pan, PVK) == expected


def test_ibm3624_natural_pin_has_offset_zero() -> None:
    pan = "4761739001010028"
    natural = natural_pin(pan, PVK, 4)
    assert ibm3624_offset(natural, pan, PVK) == "0000"


def test_ibm3624_verify_good_and_bad() -> None:
    pan = "4761739001010010"
    offset = ibm3624_offset("1234", pan, PVK)
    assert verify_ibm3624("1234", pan, PVK, offset)
    assert not verify_ibm3624("1235", pan, PVK, offset)
    assert not verify_ibm3624("4321", pan, PVK, offset)
    assert not verify_ibm3624("12345", pan, PVK, offset)  # length differs
    assert not verify_ibm3624("1234", "4761739001010028", PVK, offset)  # another card
    other_pvk = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
    assert not verify_ibm3624("1234", pan, other_pvk, offset)


@given(pin=st.text("0123456789", min_size=4, max_size=12))
def test_ibm3624_offset_verifies_its_pin(pin: str) -> None:
    pan = "5413330089010012"
    offset = ibm3624_offset(pin, pan, PVK)
    assert len(offset) == len(pin) and offset.isdigit()
    assert verify_ibm3624(pin, pan, PVK, offset)


def test_tdes_helpers_match_cryptography() -> None:
    block = bytes.fromhex("041274EDCBA9876F")
    assert encrypt_block(KEY, block) == tdes_ecb(KEY, block)
    assert decrypt_block(KEY, tdes_ecb(KEY, block)) == block
    with pytest.raises(ValueError):
        encrypt_block(KEY, b"short")
    with pytest.raises(ValueError):
        encrypt_block(b"\x01" * 5, block)
