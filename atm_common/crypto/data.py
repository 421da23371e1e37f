"""Private data on the host link: AES-GCM under a key used for nothing else.

Why: a response's field 63 tells the terminal whether to send camera snapshots (a silent
alarm); the snapshots follow in 0620 advices. MACs authenticate but do not hide, so
anyone on the wire could read a duress incident off them. Both travel encrypted, at a
fixed size, under a data key derived from the terminal's working keys:

* ``tdes`` mode: NIST SP 800-108 KDF in counter mode with HMAC-SHA256, keyed by the MAC
  working key (TAK), with a label per direction (:class:`Direction`). The TAK itself
  never encrypts anything, and the derived key never MACs.
* ``aes-dukpt`` mode: the ANSI X9.24-3 working key of the message's KSN with key usage
  "data encryption": ``decrypt`` (0x3001) for what the host sends and the device
  decrypts (responses), ``encrypt`` (0x3000) for what the device encrypts (advices).

The cipher is AES-128-GCM with a random 96-bit nonce (``nonce | ciphertext | tag``), so
two equal plaintexts never look alike. The message's MAC covers the result as usual.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atm_common.crypto.dukpt import KeyUsage

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
KEY_BYTES = 16


class Direction(enum.Enum):
    """Which way the data goes: each direction has its own key."""

    RESPONSE = "host->terminal"  # field 63 of 0110/0210
    ADVICE = "terminal->host"  # field 63 of 0620/0621

    @property
    def label(self) -> bytes:
        return f"ATM data encryption {self.value}".encode("ascii")

    @property
    def dukpt_usage(self) -> KeyUsage:
        if self is Direction.RESPONSE:
            return KeyUsage.DATA_DECRYPTION
        return KeyUsage.DATA_ENCRYPTION


def derive_tdes_data_key(tak: bytes, direction: Direction) -> bytes:
    """SP 800-108 counter-mode KDF (HMAC-SHA256): [i]_32 || label || 0x00 || [L]_32."""
    if len(tak) not in (16, 24):
        raise ValueError("the data key derives from a 16- or 24-byte TDES MAC key")
    message = (
        (1).to_bytes(4, "big") + direction.label + b"\x00" + (KEY_BYTES * 8).to_bytes(4, "big")
    )
    return hmac.new(tak, message, hashlib.sha256).digest()[:KEY_BYTES]


def seal(key: bytes, plaintext: bytes) -> bytes:
    """``nonce | ciphertext | tag``: ``len(plaintext) + OVERHEAD`` bytes."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def unseal(key: bytes, sealed: bytes) -> bytes:
    """The plaintext; ValueError when it was not sealed under ``key`` or was altered."""
    if len(sealed) < OVERHEAD:
        raise ValueError("sealed data too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None)
    except InvalidTag:
        raise ValueError("sealed data does not open under this key") from None
