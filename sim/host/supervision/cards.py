"""Supervisor cards: staff cards that open supervisor mode, each with a role and a PIN.

Why the host decides the role: a terminal that chose it from what was typed could be
told anything; the bank knows which of its staff refills cash and which services the
machine. A card entry is an 0800/171 carrying the card (fields 2, 14) and a PIN block
(52 or 110, KSN in 53), built as for a customer's request, and the card and PIN are
checked by the customer rules themselves (:meth:`RuleBook.known_card`,
:meth:`RuleBook.count_pin_try`): the same one code for an unknown card and a wrong
expiry, a blocked card refused before its PIN is tried (75), a wrong PIN 55, and the
last allowed wrong one blocks the card (75). Only then the card's date (54) and its role
(57 for a staff role that does not open an ATM). The seed's ``[[supervisor_cards]]``
hold each card's PIN as its IBM 3624 offset, never the PIN.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from atm_common.crypto.pinblock import ibm3624_offset
from atm_common.errors import ConfigError, KeyUnavailable
from atm_common.masking import mask_pan
from host_link.codec import Message
from sim.host.rules import Decline, RuleBook
from sim.host.settings import HostKeys

# The roles that open supervisor mode at an ATM (terminal/supervisor/roles.py FUNCTIONS).
ATM_ROLES = ("replenisher", "technician")
STATUSES = ("active", "blocked")
_ROLE = re.compile(r"^[a-z_]{1,16}$")


class SupervisorCards:
    """Verifies a supervisor card entry; the caller records the attempt either way."""

    def __init__(self, rules: RuleBook) -> None:
        self.rules = rules

    def verify(self, request: Message) -> str:
        """The card's role, or :class:`Decline` with the code (tries counted as for
        customers: the caller's transaction must commit a refusal too)."""
        rules = self.rules
        pan, card = rules.known_card(request, "supervisor_cards")
        if card["status"] != "active":
            raise Decline("75", f"supervisor card {card['pan_masked']} is {card['status']}")
        try:
            good = rules.store.verify_pin(request, pan, rules.keys.pvk, card["pin_offset"])
        except KeyUnavailable as exc:
            raise Decline("63", f"no PIN key: {exc}") from None
        rules.count_pin_try(card, good, table="supervisor_cards", locked="blocked")
        rules.check_expiry(card)
        role: str = card["role"]
        if role not in ATM_ROLES:
            raise Decline("57", f"supervisor card {card['pan_masked']}: role {role} not at ATMs")
        return role


def load_supervisor_cards(
    conn: sqlite3.Connection, source: str, entries: Any, keys: HostKeys
) -> None:
    """``[[supervisor_cards]]`` of the seed (inside the seed loader's transaction):
    ``pan``, ``expiry`` (YYMM), ``role``, ``pin`` (4-12 digits, stored as its offset) or
    ``pin_offset``, optional ``status`` (active / blocked)."""
    if entries is None:
        return
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(source, "supervisor_cards", "must be an array of tables")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"supervisor_cards[{i}]."
        pan = _text(source, where, entry, "pan")
        if not pan.isascii() or not pan.isdigit() or not 13 <= len(pan) <= 19:
            raise ConfigError(source, f"{where}pan", "must be 13-19 digits")
        if pan in seen:
            raise ConfigError(source, f"{where}pan", "is repeated")
        seen.add(pan)
        expiry = _text(source, where, entry, "expiry")
        if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[2:]) <= 12:
            raise ConfigError(source, f"{where}expiry", "must be YYMM")
        role = _text(source, where, entry, "role")
        if not _ROLE.match(role):
            raise ConfigError(source, f"{where}role", "must be a role name (a-z, _)")
        status = entry.get("status", "active")
        if status not in STATUSES:
            raise ConfigError(source, f"{where}status", f"must be one of {STATUSES}")
        offset = _offset(source, where, entry, pan, keys)
        conn.execute(
            "INSERT INTO supervisor_cards (pan_ref, pan_masked, expiry, role, pin_offset, status)"
            " VALUES (?,?,?,?,?,?)",
            (keys.pan_ref(pan), mask_pan(pan), expiry, role, offset, status),
        )


def _text(source: str, where: str, entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise ConfigError(source, f"{where}{key}", "must be a string")
    return value


def _offset(source: str, where: str, entry: dict[str, Any], pan: str, keys: HostKeys) -> str:
    """The PIN's IBM 3624 offset (the PIN itself is never stored), as for customers."""
    if "pin" in entry:
        pin = _text(source, where, entry, "pin")
        if not pin.isascii() or not pin.isdigit() or not 4 <= len(pin) <= 12:
            raise ConfigError(source, f"{where}pin", "must be 4-12 digits")
        return ibm3624_offset(pin, pan, keys.pvk)
    return _text(source, where, entry, "pin_offset")
