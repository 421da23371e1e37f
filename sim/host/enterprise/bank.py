"""Enterprise online banking, the user's side: log in as a role in a department, then
act on the fund accounts the table gives that role there.

Every call finds the session by its token and asks the policy (:mod:`.policy`) again,
so a role taken away or a table changed applies at the next call, not the next login.
Each call is one transaction with its journal line; a refused call is rolled back and
then journaled on its own, so it changes nothing but the journal.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from atm_common.clock import Clock
from sim.host.enterprise.credentials import DUMMY_HASH, verify_password
from sim.host.enterprise.errors import (
    Conflict,
    EnterpriseError,
    Forbidden,
    NotFound,
    Unauthorised,
    Unprocessable,
)
from sim.host.enterprise.policy import PolicyBook, domain
from sim.host.enterprise.schema import PAYOUT_ACCOUNT, ROLES, record_event
from sim.host.enterprise.sessions import DEFAULT_MINUTES, Session, SessionStore
from sim.host.ledger import Ledger, balance_of, transaction

T = TypeVar("T")
LOGIN_REFUSED = "login refused: company, user, password, role or department not right"


class EnterpriseBank:
    """Not thread-safe: used from the host's event loop, like the phone API's bank."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        ledger: Ledger,
        policy: PolicyBook,
        session_minutes: float = DEFAULT_MINUTES,
    ) -> None:
        self.conn, self.clock, self.ledger, self.policy = conn, clock, ledger, policy
        self.sessions = SessionStore(conn, clock, session_minutes)

    # -- the frame of every call --------------------------------------------------------

    def _call(
        self, kind: str, who: dict[str, str] | str, work: Callable[[], T], **detail: Any
    ) -> T:
        """Run ``work`` in a transaction with its journal line; ``who`` is the claimed
        subject and company, or a token whose session (if any) names them."""
        if isinstance(who, str):
            who = self._who(who)
        try:
            with transaction(self.conn):
                result = work()
                record_event(self.conn, self.clock, "api", kind, "ok", **who, **detail)
            return result
        except EnterpriseError as exc:
            record_event(
                self.conn, self.clock, "api", kind, "refused", **who, reason=str(exc), **detail
            )
            raise

    def _who(self, token: str) -> dict[str, str]:
        try:
            session = self.sessions.find(token, "user")
        except Unauthorised:
            return {}
        return {"subject": session.subject, "company": session.company}

    def _session(self, token: str) -> Session:
        session = self.sessions.find(token, "user")
        if not self.policy.holds(session.subject, session.role, session.dom):
            raise Unauthorised("no valid session: the role is no longer held there, log in")
        return session

    def _require(self, session: Session, account: str, operation: str) -> None:
        if not self.policy.allowed(session.subject, session.role, session.dom, account, operation):
            raise Forbidden(
                f"{operation} on {account} is not permitted to {session.role}"
                f" in {session.department}"
            )

    # -- login and the session's view ---------------------------------------------------

    def login(
        self, company: str, user: str, password: str, role: str, department: str
    ) -> dict[str, Any]:
        who = {"subject": user, "company": company}

        def work() -> dict[str, Any]:
            if role not in ROLES:
                raise Unprocessable(f"unknown role {role!r}: one of {', '.join(ROLES)}")
            row = self.conn.execute(
                "SELECT password, company_id FROM ent_users WHERE id = ?", (user,)
            ).fetchone()
            good = verify_password(password, row["password"] if row else DUMMY_HASH)
            dom = domain(company, department)
            if not (good and row["company_id"] == company and self.policy.holds(user, role, dom)):
                raise Unauthorised(LOGIN_REFUSED)
            session = Session("user", user, company, role, department)
            return self.sessions.open(session) | self._view(session)

        return self._call("login", who, work, role=role, department=department)

    def view(self, token: str) -> dict[str, Any]:
        return self._call("session", token, lambda: self._view(self._session(token)))

    def logout(self, token: str) -> None:
        def work() -> None:
            self._session(token)
            self.sessions.close(token)

        self._call("logout", token, work)

    def _view(self, session: Session) -> dict[str, Any]:
        operations, accounts = self.policy.entry(session.role, session.dom)
        return {
            "user": session.subject,
            "company": session.company,
            "role": session.role,
            "department": session.department,
            "operations": operations,
            "accounts": [self._account(a, "balance" in operations) for a in accounts],
        }

    def _account(self, account: str, with_balance: bool) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT a.*, f.label FROM accounts a JOIN ent_fund_accounts f ON f.account_id = a.id"
            " WHERE a.id = ?",
            (account,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no fund account {account}")
        out: dict[str, Any] = {
            "account": account,
            "label": row["label"],
            "currency": row["currency"],
        }
        if with_balance:
            balance = balance_of(row)
            out |= {"ledger_balance": balance.ledger, "available": balance.available}
        return out

    # -- operations ---------------------------------------------------------------------

    def balance(self, token: str, account: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            self._require(self._session(token), account, "balance")
            return self._account(account, True)

        return self._call("balance", token, work, account=account)

    def statement(self, token: str, account: str, limit: int = 50) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            self._require(self._session(token), account, "statement")
            rows = self.conn.execute(
                "SELECT * FROM transfers WHERE (debit_account = ? OR credit_account = ?)"
                " AND status IN ('posted', 'pending') ORDER BY id DESC LIMIT ?",
                (account, account, limit),
            ).fetchall()
            lines = [
                {
                    "id": r["id"],
                    "at": r["created_at"],
                    "kind": r["kind"],
                    "status": r["status"],
                    "amount": r["amount"] if r["credit_account"] == account else -r["amount"],
                    "counterpart": (
                        r["debit_account"]
                        if r["credit_account"] == account
                        else r["credit_account"]
                    ),
                }
                for r in rows
            ]
            return self._account(account, True) | {"lines": lines}

        return self._call("statement", token, work, account=account)

    def _funds(self, account: str, amount: int) -> None:
        if amount <= 0:
            raise Unprocessable("the amount must be a positive number of minor units")
        if self.ledger.balance(account).available < amount:
            raise Conflict(f"insufficient funds on {account}")

    def transfer(self, token: str, source: str, target: str, amount: int) -> dict[str, Any]:
        """Between two fund accounts, both of which the role may transfer on."""

        def work() -> dict[str, Any]:
            session = self._session(token)
            self._require(session, source, "transfer")
            self._require(session, target, "transfer")
            if source == target:
                raise Unprocessable("source and target are the same account")
            self._funds(source, amount)
            transfer_id = self.ledger.transfer(source, target, amount, kind="enterprise_transfer")
            return {
                "transfer_id": transfer_id,
                "source": source,
                "target": target,
                "amount": amount,
            }

        return self._call("transfer", token, work, source=source, target=target, amount=amount)

    def payout(self, token: str, account: str, beneficiary: str, amount: int) -> dict[str, Any]:
        """To an external account: held now, paid when another user approves it."""

        def work() -> dict[str, Any]:
            session = self._session(token)
            self._require(session, account, "payout")
            if not beneficiary.strip():
                raise Unprocessable("the beneficiary account is required")
            self._funds(account, amount)
            hold = self.ledger.transfer(
                account, PAYOUT_ACCOUNT, amount, kind="enterprise_payout", pending=True
            )
            payout_id = secrets.token_hex(10)
            self.conn.execute(
                "INSERT INTO ent_payouts (id, company_id, account_id, beneficiary, amount,"
                " hold_transfer_id, maker, status, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    payout_id,
                    session.company,
                    account,
                    beneficiary,
                    amount,
                    hold,
                    session.subject,
                    "pending",
                    self.clock.now().isoformat(),
                ),
            )
            return self._payout(payout_id)

        return self._call("payout", token, work, account=account, amount=amount)

    def approve(self, token: str, payout_id: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            session = self._session(token)
            row = self.conn.execute(
                "SELECT * FROM ent_payouts WHERE id = ? AND company_id = ?",
                (payout_id, session.company),
            ).fetchone()
            if row is None:
                raise NotFound("no such payout")
            self._require(session, row["account_id"], "approve")
            if row["maker"] == session.subject:
                raise Forbidden("a payout is approved by another user than its maker")
            if row["status"] != "pending":
                raise Conflict(f"the payout is {row['status']}")
            self.ledger.settle(row["hold_transfer_id"], post=True)
            self.conn.execute(
                "UPDATE ent_payouts SET status = 'paid', approver = ?, decided_at = ? WHERE id = ?",
                (session.subject, self.clock.now().isoformat(), payout_id),
            )
            return self._payout(payout_id)

        return self._call("approve", token, work, payout=payout_id)

    def _payout(self, payout_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM ent_payouts WHERE id = ?", (payout_id,)).fetchone()
        keys = ("id", "account_id", "beneficiary", "amount", "maker", "approver", "status")
        return {k: row[k] for k in keys}

    def events(self, company: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM ent_events WHERE company_id = ? ORDER BY at DESC LIMIT ?",
            (company, limit),
        ).fetchall()
        return [
            {k: r[k] for k in ("at", "channel", "kind", "outcome", "subject")}
            | {"detail": json.loads(r["detail"])}
            for r in rows
        ]
