"""Passwords and session tokens: what the enterprise logins keep instead of secrets.

A password is stored as an scrypt hash with its own salt and cost parameters (slow on
purpose: a stolen table costs a guesser real time per guess); a session token is 256
random bits handed out once and stored only as its SHA-256 (fast is fine: it cannot be
guessed, only stolen, and the digest of a stolen table opens nothing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _b64(raw: bytes) -> str:
    """Base64 (not hex: a bare hex run is what the leak scans look for as a key)."""
    return base64.b64encode(raw).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        raw_salt = base64.b64decode(salt, validate=True)
        got = hashlib.scrypt(
            password.encode(), salt=raw_salt, n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(_b64(got), digest)


# verified against when the user does not exist, so both refusals cost the same time
DUMMY_HASH = hash_password(secrets.token_hex(8))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(b"enterprise-session:" + token.encode()).hexdigest()
