"""Derived Unique Key Per Transaction: TDES (ANSI X9.24-1:2009) and AES (X9.24-3:2017).

The base derivation key (BDK) stays at the host (its HSM); a PIN pad is injected with its
initial key only, and derives a fresh working key for every transaction from the key
serial number (KSN) it sends along. Compromise of one transaction key reveals nothing
about the others, nor about the BDK.
"""

from __future__ import annotations

import dataclasses
import enum
import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from atm_common.crypto.tdes import encrypt_block

_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
_PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")
_MAC_VARIANT = bytes.fromhex("000000000000FF00000000000000FF00")
TDES_COUNTER_BITS = 21


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _des(key8: bytes, block: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = Cipher(TripleDES(key8 * 3), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


# --- TDES DUKPT (X9.24-1) ---------------------------------------------------------------


def tdes_ipek(bdk: bytes, ksn: bytes) -> bytes:
    """Initial PIN encryption key from the BDK and the KSN (counter bits ignored)."""
    if len(bdk) != 16 or len(ksn) != 10:
        raise ValueError("TDES DUKPT needs a 16-byte BDK and a 10-byte KSN")
    base = int.from_bytes(ksn, "big") & ~((1 << TDES_COUNTER_BITS) - 1)
    ksn8 = base.to_bytes(10, "big")[:8]
    return encrypt_block(bdk, ksn8) + encrypt_block(_xor(bdk, _KEY_MASK), ksn8)


def _nrkgp(key: bytes, data: bytes) -> bytes:
    """Non-reversible key generation process."""

    def half(k: bytes) -> bytes:
        return _xor(_des(k[:8], _xor(data, k[8:])), k[8:])

    return half(_xor(key, _KEY_MASK)) + half(key)


def tdes_transaction_key(ipek: bytes, ksn: bytes) -> bytes:
    """The current (future) key for this KSN's transaction counter."""
    counter = int.from_bytes(ksn[-3:], "big") & ((1 << TDES_COUNTER_BITS) - 1)
    register = int.from_bytes(ksn[-8:], "big") & ~((1 << TDES_COUNTER_BITS) - 1)
    key = ipek
    for shift in range(TDES_COUNTER_BITS - 1, -1, -1):
        bit = 1 << shift
        if counter & bit:
            register |= bit
            key = _nrkgp(key, register.to_bytes(8, "big"))
    return key


def tdes_pin_key(ipek: bytes, ksn: bytes) -> bytes:
    return _xor(tdes_transaction_key(ipek, ksn), _PIN_VARIANT)


def tdes_mac_key(ipek: bytes, ksn: bytes) -> bytes:
    return _xor(tdes_transaction_key(ipek, ksn), _MAC_VARIANT)


# --- AES DUKPT (X9.24-3) ----------------------------------------------------------------


class KeyUsage(enum.IntEnum):
    KEY_DERIVATION = 0x8000
    KEY_DERIVATION_INITIAL = 0x8001
    PIN_ENCRYPTION = 0x1000
    MAC_GENERATION = 0x2000
    MAC_VERIFICATION = 0x2001
    MAC_BOTH = 0x2002
    DATA_ENCRYPTION = 0x3000  # "data encryption, encrypt": what the device encrypts
    DATA_DECRYPTION = 0x3001  # "data encryption, decrypt": what the host sends it


AES128 = 0x0002

# ANSI X9.24-3:2017: a 32-bit transaction counter in which at most MAX_WORK = 16 bits may
# be set. The derivation walks one intermediate key per set bit, and a device keeps one
# future key per bit position, so a counter with more ones has no key: the device skips
# such values. Once no allowed value is left below 2^32 the device has reached its end
# of life and must stop (the counter never wraps: that would reuse every key).
AES_COUNTER_BITS = 32
AES_MAX_ONE_BITS = 16
AES_COUNTER_MAX = (1 << AES_COUNTER_BITS) - 1


def aes_counter_allowed(counter: int) -> bool:
    """Is ``counter`` a transaction counter X9.24-3 allows (32 bits, at most 16 ones)?"""
    return 0 <= counter <= AES_COUNTER_MAX and counter.bit_count() <= AES_MAX_ONE_BITS


def aes_next_counter(counter: int) -> int | None:
    """The counter of the transaction after ``counter``, as an X9.24-3 device advances it:
    plus one, then while it has more than 16 ones, plus its lowest set bit (which clears
    a run of ones). None when that passes 2^32 - 1: the key is exhausted (the last
    allowed counter is FFFF0000)."""
    nxt = counter + 1
    while nxt.bit_count() > AES_MAX_ONE_BITS:
        nxt += nxt & -nxt
    return nxt if nxt <= AES_COUNTER_MAX else None


def _derivation_data(usage: int, tail: bytes) -> bytes:
    return (
        bytes([0x01, 0x01])
        + usage.to_bytes(2, "big")
        + AES128.to_bytes(2, "big")
        + (128).to_bytes(2, "big")
        + tail
    )


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


@dataclasses.dataclass(frozen=True)
class AesKsn:
    """AES DUKPT key serial number: 8-byte initial key id + 4-byte transaction counter."""

    initial_key_id: bytes
    counter: int

    @classmethod
    def parse(cls, hex_text: str) -> AesKsn:
        raw = bytes.fromhex(hex_text)
        if len(raw) != 12:
            raise ValueError("an AES DUKPT KSN is 12 bytes (24 hex digits)")
        return cls(raw[:8], int.from_bytes(raw[8:], "big"))

    def hex(self) -> str:
        return (self.initial_key_id + self.counter.to_bytes(4, "big")).hex().upper()


def aes_initial_key(bdk: bytes, initial_key_id: bytes) -> bytes:
    if len(bdk) != 16 or len(initial_key_id) != 8:
        raise ValueError("AES-128 DUKPT needs a 16-byte BDK and an 8-byte initial key id")
    return _aes(bdk, _derivation_data(KeyUsage.KEY_DERIVATION_INITIAL, initial_key_id))


def aes_working_key(initial_key: bytes, ksn: AesKsn, usage: KeyUsage) -> bytes:
    """The transaction's working key of ``usage`` (PIN, MAC) for ``ksn``.

    Raises ValueError for a counter X9.24-3 does not allow (more than 16 one-bits): no
    conforming device ever uses it, so a KSN carrying one is forged or broken.
    """
    if not aes_counter_allowed(ksn.counter):
        raise ValueError(
            f"KSN counter {ksn.counter:08X} has more than {AES_MAX_ONE_BITS} one-bits"
            " (ANSI X9.24-3 limit)"
        )
    derivation_id = ksn.initial_key_id[4:]
    key, partial = initial_key, 0
    for shift in range(31, -1, -1):
        bit = 1 << shift
        if ksn.counter & bit:
            partial |= bit
            key = _aes(
                key,
                _derivation_data(
                    KeyUsage.KEY_DERIVATION, derivation_id + partial.to_bytes(4, "big")
                ),
            )
    return _aes(key, _derivation_data(usage, derivation_id + ksn.counter.to_bytes(4, "big")))
