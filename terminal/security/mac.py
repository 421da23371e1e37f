"""Message authentication codes: ISO 9797-1 algorithm 3 (TDES) and AES-CMAC.

Algorithm 3 ("retail MAC"): single-DES CBC over the message with key K1, then the last
block is decrypted with K2 and encrypted with K1 again. Padding method 2 (0x80 then
zeros) is used on the host link, so a message and the same message with trailing zero
bytes never share a MAC; method 1 exists for the standard's test vectors.
AES-CMAC (NIST SP 800-38B / RFC 4493) comes straight from ``cryptography``.
"""

from __future__ import annotations

import hmac
import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC


def _des(key8: bytes) -> Cipher[modes.ECB]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Cipher(TripleDES(key8 * 3), modes.ECB())


def pad_method1(data: bytes) -> bytes:
    """Zero padding to a multiple of 8 (an empty message becomes one zero block)."""
    if not data:
        return bytes(8)
    return data + b"\x00" * (-len(data) % 8)


def pad_method2(data: bytes) -> bytes:
    """0x80 then zeros to a multiple of 8."""
    data += b"\x80"
    return data + b"\x00" * (-len(data) % 8)


def retail_mac(key: bytes, data: bytes, *, padding: int = 2) -> bytes:
    """ISO 9797-1 MAC algorithm 3 with a 16-byte TDES key; 8-byte result."""
    if len(key) != 16:
        raise ValueError("ISO 9797-1 algorithm 3 needs a 16-byte key")
    padded = pad_method2(data) if padding == 2 else pad_method1(data)
    k1, k2 = key[:8], key[8:]
    enc1 = _des(k1).encryptor()
    state = bytes(8)
    for i in range(0, len(padded), 8):
        block = bytes(a ^ b for a, b in zip(state, padded[i : i + 8], strict=True))
        state = enc1.update(block)
    dec2 = _des(k2).decryptor()
    state = dec2.update(state)
    enc1b = _des(k1).encryptor()
    return enc1b.update(state)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC, full 16-byte tag."""
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def verify(expected: bytes, actual: bytes) -> bool:
    return hmac.compare_digest(expected, actual)
