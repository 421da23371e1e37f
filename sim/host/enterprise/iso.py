"""The ATM's side: a corporate card's requests checked against the same table.

A card whose holder is an enterprise user acts only through a role and department
(field 124) on a fund account (field 102), checked on every 0100 and 0200:

- 0100 without a claim (the PIN check): approved with the pairs the user holds in 124
  and zero balances (nothing of any fund account is shown before a role is chosen);
- 0100 with a claim, no account: what the claim opens (operations, fund accounts);
- 0100 with a claim and an account: its balance, if the role may see it there;
- 0200 with a claim and an account: a withdrawal from it, if the role may withdraw.

A claim not held, an account the role may not touch there, or an operation it may not
do is declined 57, before anything is posted; every answer is journaled (channel atm).
Other cards pass unchanged. :meth:`EnterpriseGate.apply` is the authoriser's one hook.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import NoReturn

from atm_common.clock import Clock
from host_link.codec import Message
from host_link.enterprise import (
    ACCOUNT_FIELD,
    FIELD,
    Claim,
    grant_field,
    parse_claim,
    roles_field,
)
from host_link.errors import CodecError
from sim.host.enterprise.policy import PolicyBook, domain
from sim.host.enterprise.schema import ensure_schema, record_event
from sim.host.ledger import balance_of
from sim.host.rules import CardSession, Decline

NOT_PERMITTED = "57"


class EnterpriseGate:
    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        ensure_schema(conn)
        self.conn, self.clock = conn, clock
        self.policy = PolicyBook(conn)

    def _user(self, session: CardSession) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT u.id, u.company_id FROM cards c JOIN ent_users u ON u.id = c.person_id"
            " WHERE c.pan_ref = ?",
            (session.pan_ref,),
        ).fetchone()
        return row

    def apply(
        self, request: Message, session: CardSession, operation: str
    ) -> tuple[CardSession, dict[str, str]]:
        """The session as this request may see it, and the fields to add to the
        answer; :class:`Decline` (57, or 30 for a malformed claim) when not permitted."""
        user = self._user(session)
        if user is None:
            return session, {}
        terminal = request.get("41", "")
        claimed = request.get(FIELD, "")
        if not claimed:
            if operation != "balance":
                self._refuse(user, terminal, operation, "no role claimed", "30")
            held = [
                Claim(role, dom.partition(":")[2])
                for role, dom in self.policy.held(user["id"])
                if dom.partition(":")[0] == user["company_id"]
            ]
            blank = dataclasses.replace(session, ledger_balance=0, available=0)
            return blank, {FIELD: roles_field(held)}
        try:
            claim = parse_claim(claimed)
        except CodecError:
            self._refuse(user, terminal, operation, "malformed claim", "30")
        dom = domain(user["company_id"], claim.department)
        if not self.policy.holds(user["id"], claim.role, dom):
            self._refuse(user, terminal, operation, f"{claim.label} not held", NOT_PERMITTED)
        operations, accounts = self.policy.entry(claim.role, dom)
        grant = {FIELD: grant_field(operations, accounts)}
        account = request.get(ACCOUNT_FIELD, "")
        if not account:
            if operation != "balance":
                self._refuse(user, terminal, operation, "no account", "30")
            self._journal(user, terminal, "grant", "ok", claim=claim.label)
            return dataclasses.replace(session, ledger_balance=0, available=0), grant
        if not self.policy.allowed(user["id"], claim.role, dom, account, operation):
            self._refuse(
                user,
                terminal,
                operation,
                f"not permitted to {claim.label}",
                NOT_PERMITTED,
                account=account,
            )
        self._journal(user, terminal, operation, "ok", claim=claim.label, account=account)
        return self.rebind(request, session), grant

    def rebind(self, request: Message, session: CardSession) -> CardSession:
        """The session on the fund account of field 102 (after :meth:`apply` allowed it)."""
        account = request.get(ACCOUNT_FIELD, "")
        if not account or self._user(session) is None:
            return session
        row = self.conn.execute("SELECT * FROM accounts WHERE id = ?", (account,)).fetchone()
        if row is None or row["locked"]:
            raise Decline(NOT_PERMITTED, f"fund account {account} unknown or locked")
        balance = balance_of(row)
        return dataclasses.replace(
            session,
            account=account,
            currency=row["currency"],
            ledger_balance=balance.ledger,
            available=balance.available,
        )

    def _journal(
        self, user: sqlite3.Row, terminal: str, kind: str, outcome: str, **detail: str
    ) -> None:
        record_event(
            self.conn,
            self.clock,
            "atm",
            kind,
            outcome,
            subject=user["id"],
            company=user["company_id"],
            terminal=terminal,
            **detail,
        )

    def _refuse(
        self,
        user: sqlite3.Row,
        terminal: str,
        operation: str,
        reason: str,
        code: str,
        **detail: str,
    ) -> NoReturn:
        """Journal the refusal (it commits with the request's declined answer) and decline."""
        self._journal(user, terminal, operation, "refused", reason=reason, **detail)
        raise Decline(code, f"enterprise {operation} refused: {reason}")
