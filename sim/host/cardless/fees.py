"""Pricing a cardless withdrawal: the accounts a customer may draw on, and one quote.

The fee depends on the card product of the account's card (``[cardless.fees]`` in the
seed, :class:`sim.host.settings.FeeRule`), so listing the accounts also finds each one's
product. :func:`price` checks an amount, method and account and prices them; it only
reads. The phone steps (:mod:`.phone`) price twice: for the quote, and again at confirm
(funds may have moved, and a quoted fee that changed is refused).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from atm_common.money import format_minor
from host_link.cardless import MODES
from sim.host.cardless.errors import Conflict, NotFound, Unprocessable
from sim.host.ledger import balance_of
from sim.host.settings import CardlessSettings


def customer_accounts(conn: sqlite3.Connection, person_id: str) -> list[dict[str, Any]]:
    """The person's accounts with balances and the card product that prices each."""
    rows = conn.execute(
        "SELECT a.*, ("
        "  SELECT c.product FROM cards c JOIN card_accounts ca ON ca.pan_ref = c.pan_ref"
        "  WHERE ca.account_id = a.id AND c.person_id = o.person_id"
        "  ORDER BY c.status = 'active' DESC, ca.is_default DESC, c.pan_masked LIMIT 1"
        " ) AS product, ("
        "  SELECT c.pan_masked FROM cards c JOIN card_accounts ca ON ca.pan_ref = c.pan_ref"
        "  WHERE ca.account_id = a.id AND c.person_id = o.person_id"
        "  ORDER BY c.status = 'active' DESC, ca.is_default DESC, c.pan_masked LIMIT 1"
        " ) AS card"
        " FROM accounts a JOIN ownership o ON o.account_id = a.id"
        " WHERE o.person_id = ? ORDER BY a.id",
        (person_id,),
    ).fetchall()
    out = []
    for r in rows:
        balance = balance_of(r)
        out.append(
            {
                "account": r["id"],
                "currency": r["currency"],
                "ledger_balance": balance.ledger,
                "available": balance.available,
                "locked": bool(r["locked"]),
                "card_product": r["product"] or "none",
                "card": r["card"],
            }
        )
    return out


def price(
    conn: sqlite3.Connection,
    settings: CardlessSettings,
    bank_currency: str,
    person_id: str,
    account: str,
    amount: int,
    method: str,
) -> dict[str, Any]:
    """Validate and price; raises without changing anything."""
    s = settings
    if method not in MODES:
        raise Unprocessable(f"method must be one of {', '.join(MODES)}")
    if not s.min_amount <= amount <= s.max_amount or amount % s.multiple:
        raise Unprocessable(
            f"amount must be {s.min_amount}..{s.max_amount} in steps of {s.multiple} (minor units)"
        )
    found = {a["account"]: a for a in customer_accounts(conn, person_id)}
    if account not in found:
        raise NotFound("this customer has no such account")
    chosen = found[account]
    if chosen["locked"]:
        raise Conflict("the account is locked")
    if chosen["currency"] != bank_currency:
        raise Conflict("cardless withdrawals are in the bank's own currency only")
    rule = s.fee_rule(chosen["card_product"])
    if rule is None:
        raise Conflict(f"no cardless fee is set for card product {chosen['card_product']}")
    fee = rule.fee(amount)
    if chosen["available"] < amount + fee:
        currency = chosen["currency"]
        raise Conflict(
            f"insufficient funds: {format_minor(amount + fee, currency)} needed,"
            f" {format_minor(chosen['available'], currency)} available"
        )
    return {
        "account": account,
        "amount": amount,
        "fee": fee,
        "total": amount + fee,
        "currency": chosen["currency"],
        "method": method,
        "card_product": chosen["card_product"],
        "fee_rule": rule.describe(),
    }
