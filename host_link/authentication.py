"""Message authentication on the host link: every message, both directions, carries a MAC.

The MAC is the last field of the message: 64 when only the primary bitmap is used, 128
when the secondary bitmap is present. It covers every byte from the MTI up to the MAC
field, bitmap included, as they are on the wire, so no bit of a message can change
without the receiver noticing. Its text is compared exactly (upper-case hex): a
case-flipped hex digit is a different message.

A response is also **bound to its request**: its MAC covers the response's bytes followed
by the request's MAC (``bound_to``). A valid response to one request therefore cannot be
passed off as the answer to another, such as a response code 63 that a man in the middle
obtained for an altered copy of a genuine withdrawal while dropping the genuine approval.
A reply to a request that failed its own MAC check, or did not decode, is never MACed:
there is no authenticated request to bind it to (see :mod:`sim.host.server`).

Who holds the key is not this module's business: an :class:`Authenticator` signs and
verifies given the message (which names the terminal, and in DUKPT mode the KSN).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from atm_common.errors import AtmError
from host_link.codec import Message, encode

MAC_HEX_LEN = 16


class Authenticator(Protocol):
    def sign(self, message: Mapping[str, str], data: bytes) -> bytes:
        """The 8-byte MAC of ``data`` (the message bytes before the MAC field)."""
        ...


def mac_field(message: Mapping[str, str]) -> str:
    """64, or 128 when any field beyond 64 is present (secondary bitmap)."""
    return "128" if any(k.isdigit() and int(k) > 64 and k != "128" for k in message) else "64"


def mac_of(raw: bytes) -> bytes:
    """The 8-byte MAC a signed message carries (its last 16 hex characters)."""
    try:
        return bytes.fromhex(raw[-MAC_HEX_LEN:].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return b""


def encode_signed(
    message: Mapping[str, str], authenticator: Authenticator, bound_to: bytes = b""
) -> bytes:
    """Encode ``message`` with its MAC in the right field.

    ``bound_to``: for a response, the MAC of the request it answers, covered by this MAC.
    """
    doc: Message = {k: v for k, v in message.items() if k not in ("64", "128")}
    field = mac_field(doc)
    doc[field] = "0" * MAC_HEX_LEN
    raw = encode(doc)
    mac = authenticator.sign(doc, raw[:-MAC_HEX_LEN] + bound_to)
    if len(mac) != MAC_HEX_LEN // 2:
        raise ValueError("a MAC must be 8 bytes")
    return raw[:-MAC_HEX_LEN] + mac.hex().upper().encode()


def check_mac(
    message: Mapping[str, str], raw: bytes, authenticator: Authenticator, bound_to: bytes = b""
) -> str | None:
    """None when ``raw`` (as received) carries a valid MAC, else what is wrong.

    ``bound_to``: for a response, the MAC of the request we sent; a response MACed for
    another request (or for none) does not verify.
    """
    field = mac_field(message)
    received = message.get(field)
    if received is None:
        return f"MAC field {field} missing"
    if not raw.endswith(received.encode()) or len(received) != MAC_HEX_LEN:
        return f"MAC field {field} is not the last field"
    try:
        expected = authenticator.sign(message, raw[:-MAC_HEX_LEN] + bound_to).hex().upper()
    except (KeyError, ValueError, AtmError) as exc:
        return f"no key to verify the MAC: {exc}"
    if not hmac.compare_digest(expected.encode(), received.encode()):
        return "MAC does not verify"
    return None
