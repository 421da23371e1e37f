"""Maintaining the permission table: bank administrators propose, another one approves.

A change replaces one entry of a company's table, (role, department) -> operations x
fund accounts (empty lists remove it). It waits as ``pending`` until a second
administrator approves it (maker-checker; the maker cannot approve their own), and is
then written to the policy rows with the version bumped, in one transaction with its
journal line: every host process enforces it from its next request on.
"""

from __future__ import annotations

import contextlib
import json
import re
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
from sim.host.enterprise.schema import OPERATIONS, ROLES, record_event
from sim.host.enterprise.sessions import DEFAULT_MINUTES, Session, SessionStore
from sim.host.ledger import transaction

T = TypeVar("T")
DEPARTMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class AdminDesk:
    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        policy: PolicyBook,
        session_minutes: float = DEFAULT_MINUTES,
    ) -> None:
        self.conn, self.clock, self.policy = conn, clock, policy
        self.sessions = SessionStore(conn, clock, session_minutes)

    def _call(self, kind: str, token: str | None, work: Callable[[], T], **detail: Any) -> T:
        who = detail.pop("who", "")
        if token is not None:
            with contextlib.suppress(Unauthorised):
                who = self.sessions.find(token, "admin").subject
        try:
            with transaction(self.conn):
                result = work()
                record_event(self.conn, self.clock, "admin", kind, "ok", subject=who, **detail)
            return result
        except EnterpriseError as exc:
            record_event(
                self.conn,
                self.clock,
                "admin",
                kind,
                "refused",
                subject=who,
                reason=str(exc),
                **detail,
            )
            raise

    def _admin(self, token: str) -> Session:
        return self.sessions.find(token, "admin")

    def login(self, admin: str, password: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            row = self.conn.execute(
                "SELECT password FROM ent_admins WHERE id = ?", (admin,)
            ).fetchone()
            good = verify_password(password, row["password"] if row else DUMMY_HASH)
            if not (good and row is not None):
                raise Unauthorised("login refused: administrator or password not right")
            return self.sessions.open(Session("admin", admin)) | {"admin": admin}

        return self._call("admin_login", None, work, who=admin)

    def table(self, token: str, company: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            self._admin(token)
            self._company(company)
            return {
                "company": company,
                "version": self.policy.version(),
                "entries": [
                    {"role": r, "department": d, "operations": ops, "accounts": accounts}
                    for r, d, ops, accounts in self.policy.entries(company)
                ],
            }

        return self._call("table", token, work, company=company)

    def _company(self, company: str) -> None:
        row = self.conn.execute("SELECT 1 FROM ent_companies WHERE id = ?", (company,)).fetchone()
        if row is None:
            raise NotFound(f"no company {company!r}")

    def propose(
        self,
        token: str,
        company: str,
        role: str,
        department: str,
        operations: list[str],
        accounts: list[str],
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            maker = self._admin(token)
            self._company(company)
            self._validate(company, role, department, operations, accounts)
            change_id = secrets.token_hex(6)
            self.conn.execute(
                "INSERT INTO ent_changes (id, company_id, role, department, operations,"
                " accounts, maker, status, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    change_id,
                    company,
                    role,
                    department,
                    json.dumps(sorted(set(operations))),
                    json.dumps(sorted(set(accounts))),
                    maker.subject,
                    "pending",
                    self.clock.now().isoformat(),
                ),
            )
            return self._change(change_id)

        return self._call(
            "change_proposed",
            token,
            work,
            company=company,
            role=role,
            department=department,
            operations=operations,
            accounts=accounts,
        )

    def _validate(
        self, company: str, role: str, department: str, operations: list[str], accounts: list[str]
    ) -> None:
        if role not in ROLES:
            raise Unprocessable(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if not DEPARTMENT.match(department):
            raise Unprocessable(f"department {department!r} is not a department id")
        for operation in operations:
            if operation not in OPERATIONS:
                raise Unprocessable(f"unknown operation {operation!r}: one of {OPERATIONS}")
        for account in accounts:
            row = self.conn.execute(
                "SELECT company_id FROM ent_fund_accounts WHERE account_id = ?", (account,)
            ).fetchone()
            if row is None or row["company_id"] != company:
                raise Unprocessable(f"{account} is not a fund account of {company}")
        if bool(operations) != bool(accounts):
            raise Unprocessable("give operations and accounts, or neither (removes the entry)")

    def decide(self, token: str, change_id: str, approve: bool) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            checker = self._admin(token)
            row = self.conn.execute(
                "SELECT * FROM ent_changes WHERE id = ?", (change_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such change")
            if row["status"] != "pending":
                raise Conflict(f"the change is {row['status']}")
            if row["maker"] == checker.subject:
                raise Forbidden("a change is approved by another administrator than its maker")
            if approve:
                self.policy.set_entry(
                    row["role"],
                    domain(row["company_id"], row["department"]),
                    json.loads(row["operations"]),
                    json.loads(row["accounts"]),
                )
            self.conn.execute(
                "UPDATE ent_changes SET status = ?, checker = ?, decided_at = ? WHERE id = ?",
                (
                    "applied" if approve else "rejected",
                    checker.subject,
                    self.clock.now().isoformat(),
                    change_id,
                ),
            )
            return self._change(change_id)

        kind = "change_approved" if approve else "change_rejected"
        return self._call(kind, token, work, change=change_id)

    def changes(self, token: str, company: str) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            self._admin(token)
            rows = self.conn.execute(
                "SELECT id FROM ent_changes WHERE company_id = ? ORDER BY created_at", (company,)
            ).fetchall()
            return [self._change(r["id"]) for r in rows]

        return self._call("changes", token, work, company=company)

    def _change(self, change_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM ent_changes WHERE id = ?", (change_id,)).fetchone()
        out = {k: row[k] for k in ("id", "role", "department", "maker", "checker", "status")}
        return out | {
            "company": row["company_id"],
            "operations": json.loads(row["operations"]),
            "accounts": json.loads(row["accounts"]),
        }
