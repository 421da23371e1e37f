"""The phone's side of a joint account: the co-owners' bank app, behind the phone API.

A co-owner's app proves who holds it with its bearer token (kept at the host only as
an HMAC); a transfer out is proved like an ATM request, by the account's password and
the requester's own code (over HTTPS; checked against their PIN verification data, never
stored). Each step is one transaction; a refusal changes nothing but the failure count,
which is committed before the refusal is answered.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from atm_common.clock import Clock
from atm_common.crypto.pinblock import ibm3624_offset, verify_ibm3624
from sim.host.cardless.errors import PhoneError
from sim.host.joint.book import JointBook
from sim.host.joint.notices import Refusal
from sim.host.joint.setup import secret_hash, valid_code
from sim.host.ledger import balance_of, transaction
from sim.host.settings import HostKeys, HostSettings

__all__ = ["JointError", "JointPhone"]


class JointError(PhoneError):
    """A refused joint-account step, with the HTTP status of its :class:`Refusal`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except Refusal as refusal:
        assert refusal is not None  # the only way here: a refusal, committed with its count
        raise JointError(refusal.status, refusal.reason) from None


class JointPhone:
    """Not thread-safe: the API's handlers call it from the host's event loop."""

    def __init__(
        self, conn: sqlite3.Connection, keys: HostKeys, settings: HostSettings, clock: Clock
    ) -> None:
        self.conn, self.keys, self.clock = conn, keys, clock
        self.book = JointBook(conn, settings, clock)

    def person(self, token: str | None) -> str:
        """The co-owner whose app holds ``token``; 401 for none or an unknown one."""
        if not token:
            raise JointError(401, "a bearer token is required")
        row = self.conn.execute(
            "SELECT person_id FROM joint_people WHERE token_hash = ?",
            (secret_hash(self.keys, "token", token),),
        ).fetchone()
        if row is None:
            raise JointError(401, "unknown bearer token")
        return str(row["person_id"])

    def view(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "approval_id": row["id"],
            "account": row["account_id"],
            "requester": row["requester"],
            "kind": row["kind"],
            "amount": row["amount"],
            "terminal_id": row["terminal_id"],
            "target": row["target"],
            "status": row["status"],
            "decided_by": row["decided_by"],
            "created_at": row["created_at"],
            "seconds_left": max(0, int(row["expires_at"] - self.clock.now().timestamp())),
        }

    # -- approvals ----------------------------------------------------------------------

    def pending(self, token: str | None) -> list[dict[str, Any]]:
        person = self.person(token)
        with transaction(self.conn):
            return [self.view(r) for r in self.book.pending_for(person)]

    def approval(self, token: str | None, approval_id: str) -> dict[str, Any]:
        person = self.person(token)
        with transaction(self.conn):
            try:
                row = self.book.approval(approval_id)
            except KeyError:
                raise JointError(404, "no such approval") from None
            if not (self.book.is_owner(row["account_id"], person) or row["requester"] == person):
                raise JointError(404, "no such approval")  # not theirs: not told it exists
            return self.view(row)

    def decide(self, token: str | None, approval_id: str, decision: str) -> dict[str, Any]:
        person = self.person(token)
        if decision not in ("approve", "reject"):
            raise JointError(422, "decision must be approve or reject")
        with transaction(self.conn), _refusals():
            return self.view(self.book.decide(approval_id, person, decision == "approve"))

    # -- a transfer out, asked for on the phone -----------------------------------------

    def transfer(
        self, account: str, password: str, code: str, amount: int, to: str
    ) -> dict[str, Any]:
        if not (valid_code(password) and valid_code(code)):
            raise JointError(422, "password and code must be 4 to 12 digits")
        refusal: Refusal | None = None
        with transaction(self.conn):
            row = self.book.account(account)
            if row is None:
                raise JointError(404, "no such joint account")
            target = self.conn.execute(
                "SELECT * FROM accounts WHERE id = ? AND kind = 'customer'", (to,)
            ).fetchone()
            if target is None or to == account:
                raise JointError(422, "the credit account must be another customer account")
            password_ok = verify_ibm3624(password, account, self.keys.pvk, row["password_offset"])
            try:
                requester = self.book.identify(
                    row,
                    password_ok,
                    lambda offset: verify_ibm3624(code, account, self.keys.pvk, offset),
                )
            except Refusal as exc:
                refusal = exc  # the failure count commits with this transaction
            else:
                source = self.conn.execute(
                    "SELECT * FROM accounts WHERE id = ?", (account,)
                ).fetchone()
                if balance_of(source).available < amount:
                    raise JointError(409, "insufficient funds")
                approval = self.book.request_approval(
                    account, requester, "transfer", amount, target=to
                )
                return self.view(approval)
        assert refusal is not None  # the only way here: a refusal, committed with its count
        raise JointError(refusal.status, refusal.reason)

    # -- binding a new co-owner ---------------------------------------------------------

    def bind(
        self, token: str | None, account: str, candidate: str, identity: str, code: str
    ) -> dict[str, Any]:
        """A co-owner's app asks to bind ``candidate``: the identity is verified, then
        every existing co-owner (the asker included) must authorise."""
        person = self.person(token)
        if not valid_code(code):
            raise JointError(422, "the candidate's code must be 4 to 12 digits")
        settings = self.book.joint
        with transaction(self.conn), _refusals():
            row = self.book.account(account)
            if row is None or not self.book.is_owner(account, person):
                raise JointError(404, "no such joint account of yours")
            self.book.refuse_if_locked(row)
            known = self.conn.execute(
                "SELECT identity_hash FROM joint_people WHERE person_id = ?", (candidate,)
            ).fetchone()
            if known is None or known["identity_hash"] != secret_hash(
                self.keys, "identity", identity
            ):
                raise JointError(403, "the candidate's identity could not be verified")
            if self.book.is_owner(account, candidate):
                raise JointError(409, f"{candidate} is already a co-owner")
            offset = ibm3624_offset(code, account, self.keys.pvk)
            if any(o["code_offset"] == offset for o in self.book.owners(account)):
                raise JointError(422, "choose another code")  # the code must name one person
            approval = self.book.request_approval(
                account,
                candidate,
                "bind",
                0,
                target=candidate,
                target_offset=offset,
                seconds=settings.bind_minutes * 60,
            )
            return self.view(approval)

    def messages(self, token: str | None) -> list[dict[str, Any]]:
        """What the bank sent this co-owner's app: notifications and bills."""
        person = self.person(token)
        phone = self.conn.execute("SELECT phone FROM persons WHERE id = ?", (person,)).fetchone()
        rows = self.conn.execute(
            "SELECT id, kind, payload, created FROM outbox WHERE (kind = 'bill' AND"
            " destination = ?) OR (kind = 'sms' AND destination = ?) ORDER BY id",
            (f"person:{person}", phone["phone"] if phone is not None else ""),
        ).fetchall()
        out = []
        for r in rows:
            payload = json.loads(r["payload"])
            if payload.get("person") != person:
                continue  # another text to the same number (cardless codes): not the app's
            out.append(
                {
                    "id": r["id"],
                    "kind": "bill" if r["kind"] == "bill" else payload.get("purpose", "sms"),
                    "account": payload.get("account"),
                    "text": payload.get("text", ""),
                    "created": r["created"],
                }
            )
        return out
