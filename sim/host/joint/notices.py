"""What the joint-account desk says: its refusals (ISO code and HTTP status alike) and
its notices to co-owners (an SMS through the durable outbox; the app shows the same)."""

from __future__ import annotations

import sqlite3
from typing import Any

from atm_common.clock import Clock
from atm_common.masking import mask_phone
from atm_common.money import format_minor
from sim.host import outbox

__all__ = ["Refusal", "describe", "notify"]

LOCKED = "J1"  # ISO response codes of host_link.codes, named where they are decided
REJECTED = "J2"
EXPIRED = "J3"
NOT_VALID = "J4"
CODE_REQUIRED = "1A"
WRONG = "55"
IN_PROGRESS = "09"
SAID = {"used": "carried out"}  # a status as a notice says it


class Refusal(Exception):
    """A refused joint-account request: ISO code, HTTP status, one line saying why."""

    def __init__(self, code: str, status: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.status, self.reason = code, status, reason


def describe(kind: str, amount: int, target: str | None, currency: str) -> str:
    """An operation as a notice names it."""
    money = format_minor(amount, currency)
    return {
        "withdrawal": f"a cash withdrawal of {money}",
        "balance": "a balance inquiry",
        "transfer": f"a transfer of {money} to {target}",
        "bind": f"binding {target} as a new co-owner",
        "cardless": f"a cardless withdrawal of {money} to reserve",
    }.get(kind, kind)


def notify(
    conn: sqlite3.Connection,
    clock: Clock,
    owner: sqlite3.Row,
    kind: str,
    account: str,
    text: str,
    **extra: Any,
) -> None:
    """An SMS to ``owner`` (a row with person_id and phone), inside the caller's
    transaction; the phone app lists it under ``GET /joint/messages``."""
    phone = owner["phone"] or ""
    outbox.enqueue(
        conn,
        "sms",
        {
            "to": phone,
            "text": text,
            "purpose": f"joint-{kind}",
            "person": owner["person_id"],
            "to_masked": mask_phone(phone),
            "account": account,
            **extra,
        },
        phone,
        clock=clock,
    )
