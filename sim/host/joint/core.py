"""The simulated core-banking accounting step, and the bill built from its answer.

In the bank's design the host does not count points itself: it hands the account type,
the account and the operation's result to the core banking system, which accounts for
the operation and answers with the account's points. :class:`CoreBanking` plays that
system (its own rule table, :class:`~sim.host.settings.PointsRule` by account type, and
its own running total); :func:`send_bill` then builds one bill per finished operation and
queues it, through the durable outbox, to every co-owner bound at that moment.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import sqlite3
from typing import Any

from atm_common.clock import Clock
from atm_common.masking import mask_phone
from atm_common.money import format_minor
from sim.host import outbox
from sim.host.settings import JointSettings

__all__ = ["Accounted", "CoreBanking", "SimulatedBillDelivery", "send_bill"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Accounted:
    """Core banking's answer: points this operation earned, and the account's total."""

    points: int
    total_points: int


class CoreBanking:
    """Account for a finished operation (inside the caller's transaction)."""

    def __init__(self, conn: sqlite3.Connection, settings: JointSettings) -> None:
        self.conn, self.settings = conn, settings

    def account_for(self, account_type: str, account: str, amount: int) -> Accounted:
        rule = self.settings.points_rule(account_type)
        earned = rule.base + (amount // rule.per) * rule.points
        row = self.conn.execute(
            "UPDATE joint_points SET points = points + ? WHERE account_id = ? RETURNING points",
            (earned, account),
        ).fetchone()
        total = int(row[0]) if row is not None else earned
        return Accounted(earned, total)


OPERATIONS = {
    "withdrawal": "cash withdrawal",
    "balance": "balance inquiry",
    "transfer": "transfer out",
    "reversal": "reversal of a cash withdrawal",
}


def send_bill(
    conn: sqlite3.Connection,
    clock: Clock,
    core: CoreBanking,
    *,
    account: str,
    operation: str,
    amount: int,
    currency: str,
    place: str,
    approval_id: str | None,
) -> str:
    """Account for the operation, record its bill, queue it to every co-owner; its id."""
    row = conn.execute(
        "SELECT account_type FROM joint_accounts WHERE account_id = ?", (account,)
    ).fetchone()
    accounted = core.account_for(row["account_type"], account, amount)
    bill_id = secrets.token_hex(10)
    at = clock.now().isoformat(timespec="seconds")
    conn.execute(
        "INSERT INTO joint_bills VALUES (?,?,?,?,?,?,?,?,?)",
        (
            bill_id,
            account,
            approval_id,
            operation,
            amount,
            place,
            at,
            accounted.points,
            accounted.total_points,
        ),
    )
    what = OPERATIONS.get(operation, operation)
    text = (
        f"Your bank, joint account {account}: {what} of {format_minor(amount, currency)}"
        f" at {place}, {at[:16].replace('T', ' ')} UTC. Points +{accounted.points},"
        f" total {accounted.total_points}."
    )
    owners = conn.execute(
        "SELECT o.person_id, p.phone FROM joint_owners o JOIN persons p ON p.id = o.person_id"
        " WHERE o.account_id = ? ORDER BY o.person_id",
        (account,),
    ).fetchall()
    for owner in owners:
        outbox.enqueue(
            conn,
            "bill",
            {
                "bill_id": bill_id,
                "person": owner["person_id"],
                "to": owner["phone"] or "",
                "to_masked": mask_phone(owner["phone"] or ""),
                "account": account,
                "time": at,
                "amount": amount,
                "currency": currency,
                "place": place,
                "operation": operation,
                "points": accounted.points,
                "total_points": accounted.total_points,
                "text": text,
            },
            f"person:{owner['person_id']}",
            clock=clock,
        )
    return bill_id


class SimulatedBillDelivery:
    """The outbox's ``bill`` deliverer: there is no real push service in the simulator;
    the co-owner's app reads its bills from the host (``GET /joint/messages``), so
    delivery is accepting it. The log names the bill and a masked phone, nothing more."""

    async def __call__(self, payload: dict[str, Any]) -> None:
        log.info(
            "bill %s for %s handed to the bank app",
            payload.get("bill_id", "?"),
            mask_phone(str(payload.get("to", ""))),
        )
