"""Public test vectors, each cited. Those marked DESIGN.md come from the project's design
guide; the others were looked up for this suite and name their source."""

from __future__ import annotations

import pytest

from atm_common.crypto import dukpt
from atm_common.crypto.mac import aes_cmac, retail_mac
from atm_common.crypto.pinblock import (
    clear_format0,
    encrypt_format0,
    encrypt_format4,
    ibm3624_offset,
    recover_pin_format0,
    recover_pin_format4,
    verify_ibm3624,
)
from atm_common.errors import RemoteProtocolError

H = bytes.fromhex
TDES_BDK = H("0123456789ABCDEFFEDCBA9876543210")
AES_BDK = H("FEDCBA9876543210F1F1F1F1F1F1F1F1")
AES_IK_ID = H("1234567890123456")


def test_iso9564_format0_clear_block() -> None:  # DESIGN.md
    assert clear_format0("1234", "4012345678909").hex().upper() == "041274EDCBA9876F"


def test_tdes_dukpt_ipek() -> None:  # DESIGN.md (ANSI X9.24-1:2009 Annex A)
    ipek = dukpt.tdes_ipek(TDES_BDK, H("FFFF9876543210E00000"))
    assert ipek.hex().upper() == "6AC292FAA1315B4D858AB3A3D7D5933A"


def test_tdes_dukpt_first_transaction() -> None:  # DESIGN.md (X9.24-1:2009 Annex A)
    ipek = dukpt.tdes_ipek(TDES_BDK, H("FFFF9876543210E00000"))
    ksn = H("FFFF9876543210E00001")
    # The design guide's "PIN key" is the transaction key before the PIN variant;
    # the encrypted PIN block (the end-to-end figure) uses the variant, as the standard says.
    assert dukpt.tdes_transaction_key(ipek, ksn).hex().upper() == "042666B49184CFA368DE9628D0397BC9"
    block = encrypt_format0("1234", "4012345678909", dukpt.tdes_pin_key(ipek, ksn))
    assert block.hex().upper() == "1B9C1845EB993A7A"


@pytest.mark.parametrize(
    ("counter", "expected"),
    [(2, "10A01C8D02C69107"), (3, "18DC07B94797B466")],
)
def test_tdes_dukpt_further_transactions(counter: int, expected: str) -> None:
    # ANSI X9.24-1:2009 Annex A.4, table of PIN blocks for PIN 1234 / PAN 4012345678909.
    ipek = dukpt.tdes_ipek(TDES_BDK, H("FFFF9876543210E00000"))
    ksn = H(f"FFFF9876543210E{counter:05X}")
    assert (
        encrypt_format0("1234", "4012345678909", dukpt.tdes_pin_key(ipek, ksn)).hex().upper()
        == expected
    )


def test_aes_dukpt_initial_key() -> None:  # DESIGN.md (ANSI X9.24-3:2017)
    assert (
        dukpt.aes_initial_key(AES_BDK, AES_IK_ID).hex().upper()
        == "1273671EA26AC29AFA4D1084127652A1"
    )


def test_aes_dukpt_first_pin_key() -> None:
    # ANSI X9.24-3:2017 supplement test vectors, AES-128 BDK, counter 1, PIN encryption key.
    ik = dukpt.aes_initial_key(AES_BDK, AES_IK_ID)
    key = dukpt.aes_working_key(ik, dukpt.AesKsn(AES_IK_ID, 1), dukpt.KeyUsage.PIN_ENCRYPTION)
    assert key.hex().upper() == "AF8CB133A78F8DC2D1359F18527593FB"


def test_iso9797_alg3_design_vector() -> None:  # DESIGN.md
    mac = retail_mac(H("7CA110454A1A6E570131D9619DC1376E"), b"Hello World !!!!", padding=1)
    assert mac.hex().upper() == "F09B856213BAB83B"


def test_iso9797_alg3_ansi_x919_vector() -> None:
    # ANSI X9.19 retail MAC example: "Now is the time for all ", K = 0123..EF FEDC..10.
    assert (
        retail_mac(TDES_BDK, b"Now is the time for all ", padding=1).hex().upper()
        == "A1C72E74EA3FA9B6"
    )


@pytest.mark.parametrize(
    ("message", "tag"),
    [
        ("", "bb1d6929e95937287fa37d129b756746"),  # DESIGN.md / RFC 4493 example 1
        ("6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"),  # example 2
        (  # RFC 4493 example 3 (40 bytes)
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411",
            "dfa66747de9ae63030ca32611497c827",
        ),
    ],
)
def test_aes_cmac_rfc4493(message: str, tag: str) -> None:
    assert aes_cmac(H("2b7e151628aed2a6abf7158809cf4f3c"), H(message)).hex() == tag


def test_format4_fields_x924_3_supplement() -> None:
    # ANSI X9.24-3:2017 supplement, "Calculation of AES PIN Block Format 4": PIN 1234,
    # PAN 4111111111111111 -> PIN field 441234AAAAAAAAAA + fill, PAN field 4411..1000...
    key = bytes(range(16))
    fill = H("0011223344556677")
    block = encrypt_format4("1234", "4111111111111111", key, random_fill=fill)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    intermediate = dec.update(block)
    pan_field = H("44111111111111111000000000000000")
    xored = bytes(a ^ b for a, b in zip(intermediate, pan_field, strict=True))
    dec2 = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    assert dec2.update(xored) == H("441234AAAAAAAAAA") + fill
    assert recover_pin_format4(block, "4111111111111111", key) == "1234"


def test_format4_random_fill_makes_blocks_differ() -> None:
    key = bytes(16)
    assert encrypt_format4("1234", "4111111111111111", key) != encrypt_format4(
        "1234", "4111111111111111", key
    )


def test_format4_wrong_pan_or_key_does_not_recover() -> None:
    key = bytes(16)
    block = encrypt_format4("1234", "4111111111111111", key)
    with pytest.raises(RemoteProtocolError):
        recover_pin_format4(block, "4111111111111111", bytes([1]) * 16)


def test_format0_round_trip_and_wrong_key() -> None:
    block = encrypt_format0("98765", "4761739001010010", TDES_BDK)
    assert recover_pin_format0(block, "4761739001010010", TDES_BDK) == "98765"
    with pytest.raises(RemoteProtocolError):
        recover_pin_format0(block, "4761739001010010", H("00" * 16))


def test_ibm3624_offset_verifies_only_the_right_pin() -> None:
    offset = ibm3624_offset("1234", "4012345678909", TDES_BDK)
    assert verify_ibm3624("1234", "4012345678909", TDES_BDK, offset)
    assert not verify_ibm3624("1235", "4012345678909", TDES_BDK, offset)
    assert not verify_ibm3624("12345", "4012345678909", TDES_BDK, offset)
