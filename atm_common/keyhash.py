"""Short secrets kept as salted, slow hashes: ``scrypt$<n>$<r>$<p>$<salt>$<hash>``.

Why: a supervisor key is a few digits typed on a PIN pad. Its plain SHA-256 in a config
file gives the key back to anyone who can read the file (a million guesses of a 6-digit
key take under a second). Salted scrypt makes each guess cost ~90 ms of CPU and 16 MiB
of memory, and a salt per hash makes every file its own search, so the file is no
longer the key. The stored form names its parameters, so stronger ones can be chosen
later without breaking the files already written.

Parameters of new hashes: n = 2**14, r = 8, p = 1 (16 MiB), 16-byte random salt, 32-byte
hash (base64; unpadded is read too): ~90 ms per hash on the 2-core development machine. Verifying
parses the stored string, recomputes with its own parameters (bounded, so a config cannot
ask for gigabytes) and compares in constant time (:func:`hmac.compare_digest`).
Standard library only (:func:`hashlib.scrypt`, OpenSSL's). The same form as the
enterprise logins' passwords (``sim.host.enterprise.credentials`` uses this module).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets

from atm_common.errors import SecurityError

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1  # ~90 ms and 16 MiB per hash on the development machine
SALT_BYTES = 16
HASH_BYTES = 32
# What a stored hash may ask for: at least what new hashes use is not required (older,
# weaker files still verify), but nothing that costs more than ~1 GiB or minutes.
MAX_N, MAX_R, MAX_P = 2**20, 32, 16
MAX_MEMORY = 2**30


class KeyHashError(SecurityError):
    """A stored key hash is not of the form :func:`hash_key` writes (never says the key)."""


@dataclasses.dataclass(frozen=True)
class KeyHash:
    """A parsed ``scrypt$n$r$p$salt$hash`` string."""

    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes

    def matches(self, key: str) -> bool:
        """Does ``key`` hash to this? Constant time in where the bytes differ."""
        return hmac.compare_digest(_scrypt(key, self.salt, self.n, self.r, self.p), self.hash)


def _b64(data: bytes) -> str:
    """Base64 (not hex: a bare hex run is what the leak scans look for as a key)."""
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    memory = 128 * r * n * p + 128 * r * p + 2**20  # scrypt's own need, with room
    return hashlib.scrypt(
        key.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=HASH_BYTES
    )


def hash_key(key: str) -> str:
    """The stored form of ``key``: a fresh random salt every call, so two hashes of one
    key differ and both verify."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(_scrypt(key, salt, N, R, P))}"


def parse_key_hash(stored: str) -> KeyHash:
    """Parse a stored hash; :class:`KeyHashError` says what is wrong with it."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        if len(stored) == 64 and all(c in "0123456789abcdefABCDEF" for c in stored):
            raise KeyHashError("is an unsalted SHA-256 (the old form), no longer accepted")
        raise KeyHashError(f"is not a {SCHEME}$n$r$p$salt$hash string")
    _, n_text, r_text, p_text, salt_text, hash_text = parts
    if not all(t.isascii() and t.isdigit() for t in (n_text, r_text, p_text)):
        raise KeyHashError("n, r and p must be whole numbers")
    n, r, p = int(n_text), int(r_text), int(p_text)
    if not (2 <= n <= MAX_N and n & (n - 1) == 0):
        raise KeyHashError(f"n must be a power of 2 up to {MAX_N}")
    if not (1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise KeyHashError(f"r must be 1-{MAX_R} and p 1-{MAX_P}")
    if 128 * r * n * p > MAX_MEMORY:
        raise KeyHashError("n, r and p ask for more than 1 GiB of work")
    try:
        salt, digest = _unb64(salt_text), _unb64(hash_text)
    except (binascii.Error, ValueError):
        raise KeyHashError("salt and hash must be base64") from None
    if len(salt) < SALT_BYTES or len(digest) != HASH_BYTES:
        raise KeyHashError(f"needs a salt of {SALT_BYTES}+ bytes and a {HASH_BYTES}-byte hash")
    return KeyHash(n, r, p, salt, digest)


def verify_key(key: str, stored: str) -> bool:
    """Does ``key`` match the stored hash? A malformed ``stored`` raises KeyHashError."""
    return parse_key_hash(stored).matches(key)
