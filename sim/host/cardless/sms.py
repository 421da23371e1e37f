"""The bank's text messages: what it sends, how, and how it keeps the SMS code.

An SMS goes into the durable outbox (:mod:`sim.host.outbox`) in the same transaction as
the step that sends it, so a code is texted exactly when its step commits; the outbox
worker then hands it to a gateway. There is no real SMS network in the simulator: the
:class:`SimulatedSmsGateway` accepts every message and the phone reads its inbox from
the host (``GET /phones/{phone}/messages``, :func:`inbox`). The SMS code itself is kept
only as an HMAC under the host's ``pan_key`` (:func:`code_hash`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
from typing import Any

from atm_common.clock import Clock
from atm_common.masking import mask_phone
from atm_common.money import format_minor
from sim.host import outbox

log = logging.getLogger(__name__)


def code_hash(key: bytes, request_id: str, code: str) -> str:
    """The HMAC kept instead of a phone session's SMS code (bound to the session)."""
    return hmac.new(key, f"sms:{request_id}:{code}".encode(), hashlib.sha256).hexdigest()


def verification_text(code: str, minutes: int) -> str:
    return (
        f"Your bank: {code} is your code for a cardless cash withdrawal. It is valid"
        f" {minutes} minutes. Never share it with anyone."
    )


def reservation_text(amount: int, fee: int, currency: str, until: str, code: str | None) -> str:
    """The confirmation; ``until`` is the expiry as people read it (UTC), ``code`` the
    reservation code for code methods (the one time it is sent anywhere)."""
    text = (
        f"Your bank: {format_minor(amount, currency)} reserved for cardless withdrawal"
        f" (fee {format_minor(fee, currency)}) until {until} UTC."
    )
    if code is not None:
        text += f" Code {code}: type it at the ATM like a PIN. Never share it."
    return text


def send(conn: sqlite3.Connection, clock: Clock, digits: str, text: str, purpose: str) -> None:
    """Queue an SMS to the phone ``digits`` (inside the caller's transaction)."""
    outbox.enqueue(
        conn,
        "sms",
        {"to": f"+{digits}", "text": text, "purpose": purpose},
        f"+{digits}",
        clock=clock,
    )


def inbox(conn: sqlite3.Connection, digits: str) -> list[dict[str, Any]]:
    """The phone's SMS inbox: what the outbox holds for it (the simulated network)."""
    rows = conn.execute(
        "SELECT id, payload, status, created, delivered_at FROM outbox"
        " WHERE kind = 'sms' AND destination = ? ORDER BY id",
        (f"+{digits}",),
    ).fetchall()
    return [
        {
            "id": r["id"],
            "text": json.loads(r["payload"]).get("text", ""),
            "status": r["status"],
            "created": r["created"],
            "delivered_at": r["delivered_at"],
        }
        for r in rows
    ]


class SimulatedSmsGateway:
    """The outbox's SMS deliverer: there is no real gateway, the phone reads its inbox
    from the host (GET /phones/{phone}/messages), so delivery is accepting it."""

    async def __call__(self, payload: dict[str, Any]) -> None:
        to = str(payload.get("to", ""))
        log.info("SMS to %s handed to the simulated network", mask_phone(to))
