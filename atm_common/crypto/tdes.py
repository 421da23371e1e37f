"""Triple-DES ECB helpers (single 8-byte blocks), as PIN blocks and IBM 3624 need."""

from __future__ import annotations

import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes


def _expand(key: bytes) -> bytes:
    """Two-key TDES (K1K2) is expanded to K1K2K1; single DES to K1K1K1."""
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 8:
        return key * 3
    if len(key) == 24:
        return key
    raise ValueError(f"TDES key must be 8, 16 or 24 bytes, got {len(key)}")


def _cipher(key: bytes) -> Cipher[modes.ECB]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Cipher(TripleDES(_expand(key)), modes.ECB())


def encrypt_block(key: bytes, block: bytes) -> bytes:
    if len(block) % 8:
        raise ValueError("TDES ECB data must be a multiple of 8 bytes")
    enc = _cipher(key).encryptor()
    return enc.update(block) + enc.finalize()


def decrypt_block(key: bytes, block: bytes) -> bytes:
    if len(block) % 8:
        raise ValueError("TDES ECB data must be a multiple of 8 bytes")
    dec = _cipher(key).decryptor()
    return dec.update(block) + dec.finalize()


def key_check_value(key: bytes) -> str:
    """KCV: the first 3 bytes of TDES-encrypting 8 zero bytes, as 6 hex digits.

    How a key ceremony and a key exchange prove both ends hold the same key without
    showing it.
    """
    return encrypt_block(key, bytes(8))[:3].hex().upper()
