"""Field 48 of a payment-app binding (processing code ``PAYAPP_BIND``), both directions.

Request: empty (open a session for the card's account) or ``S=<session id>`` (where is
it?). Response: ``S=<id>;ST=<status>`` and, when there is one, ``A=<address>`` (the
binding address the terminal shows as a QR code) and ``R=<reason>`` (why it failed).
Values never hold ``;``: ids and addresses are URL-safe, reasons are cleaned.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_FIELD = 999


def encode_request(session_id: str | None) -> str:
    return "" if session_id is None else f"S={session_id}"


def parse_request(field48: str) -> str | None:
    """The session id asked about, or None to open one; ValueError when malformed."""
    if not field48:
        return None
    if not field48.startswith("S=") or not _ID.fullmatch(field48[2:]):
        raise ValueError("field 48 of a binding request must be empty or S=<session id>")
    return field48[2:]


def encode_status(session_id: str, status: str, address: str | None, reason: str | None) -> str:
    parts = [f"S={session_id}", f"ST={status}"]
    if address:
        parts.append(f"A={address}")
    if reason:
        parts.append("R=" + re.sub(r"[;=\x00-\x1f]", " ", reason)[:200])
    return ";".join(parts)[:MAX_FIELD]


def parse_status(field48: str) -> dict[str, str]:
    """The response's parts by key (S, ST, A, R); ValueError without S and ST."""
    parts = dict(p.split("=", 1) for p in field48.split(";") if "=" in p)
    if "S" not in parts or "ST" not in parts:
        raise ValueError("field 48 of a binding response lacks S= or ST=")
    return parts
