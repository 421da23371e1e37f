"""Message authentication codes: ISO 9797-1 algorithm 3 (TDES) and AES-CMAC.

Algorithm 3 ("retail MAC"): single-DES CBC over the message with key K1, then the last
block is decrypted with K2 and encrypted with K1 again. Padding method 2 (0x80 then
zeros) is used on the host link, so a message and the same message with trailing zero
bytes never share a MAC; method 1 exists for the standard's test vectors.
AES-CMAC (NIST SP 800-38B / RFC 4493) comes straight from ``cryptography``.
"""

from __future__ import annotations

import functools
import hmac
import warnings

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC


@functools.lru_cache(maxsize=256)  # a Cipher holds no state; contexts are made per call
def _des_ecb(key8: bytes) -> Cipher[modes.ECB]:
    # single DES as TDES with K1=K2=K3; cryptography warns about TDES, knowingly used here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Cipher(TripleDES(key8 * 3), modes.ECB())


@functools.lru_cache(maxsize=256)
def _des_cbc(key8: bytes) -> Cipher[modes.CBC]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Cipher(TripleDES(key8 * 3), modes.CBC(bytes(8)))


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
    """ISO 9797-1 MAC algorithm 3 with a 16-byte TDES key; 8-byte result.

    Single-DES CBC under K1 over the whole message (one call, not a loop per block),
    then the last block is decrypted under K2 and encrypted under K1 again.
    """
    if len(key) != 16:
        raise ValueError("ISO 9797-1 algorithm 3 needs a 16-byte key")
    padded = pad_method2(data) if padding == 2 else pad_method1(data)
    k1, k2 = key[:8], key[8:]
    cbc = _des_cbc(k1).encryptor()
    state = (cbc.update(padded) + cbc.finalize())[-8:]
    state = _des_ecb(k2).decryptor().update(state)
    return _des_ecb(k1).encryptor().update(state)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC, full 16-byte tag."""
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def verify(expected: bytes, actual: bytes) -> bool:
    return hmac.compare_digest(expected, actual)
