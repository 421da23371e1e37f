"""Passwords and session tokens: what the enterprise logins keep instead of secrets.

A password is stored as an scrypt hash with its own salt and cost parameters (slow on
purpose: a stolen table costs a guesser real time per guess); a session token is 256
random bits handed out once and stored only as its SHA-256 (fast is fine: it cannot be
guessed, only stolen, and the digest of a stolen table opens nothing).
"""

from __future__ import annotations

import hashlib
import secrets

from atm_common.keyhash import KeyHashError, hash_key, verify_key


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh salt (:mod:`atm_common.keyhash`)."""
    return hash_key(password)


def verify_password(password: str, stored: str) -> bool:
    """A malformed stored hash opens nothing (it is refused like a wrong password)."""
    try:
        return verify_key(password, stored)
    except KeyHashError:
        return False


# verified against when the user does not exist, so both refusals cost the same time
DUMMY_HASH = hash_password(secrets.token_hex(8))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(b"enterprise-session:" + token.encode()).hexdigest()
