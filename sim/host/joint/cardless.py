"""A cardless reservation on a joint account: proved, then approved, then frozen.

The phone's cardless flow (sim/host/cardless/phone.py) runs as for any account up to
the quote. On a joint account the plain confirmation is refused (``PhoneBank.joint_gate``);
the phone confirms instead with the account's password and the requester's own code
(``POST /cardless/requests/{id}/joint-reservation``). They are checked exactly as for a
transfer out (:meth:`JointBook.identify`: the same failure count and lock), and the code
must be the session's own person's: another co-owner's code counts as a failure. Then a
pending ``cardless`` approval (its target the quote) goes to every other co-owner and
**nothing is held**. The first approval freezes the quote (hold + reservation + SMS with
the collection code, in the decision's transaction, through :meth:`PhoneBank.reserve_quote`);
a rejection, an expiry or a lock ends it with nothing held. The bill to every co-owner
follows when the cash is collected (:meth:`JointDesk.cardless_collected`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from atm_common.crypto.pinblock import verify_ibm3624
from sim.host.cardless.errors import PhoneError
from sim.host.cardless.phone import PhoneBank
from sim.host.joint.notices import Refusal
from sim.host.joint.phone import JointError, JointPhone
from sim.host.joint.setup import valid_code
from sim.host.ledger import transaction

__all__ = ["JointCardless"]


class JointCardless:
    """Not thread-safe: called from the host's event loop, like both services it joins."""

    def __init__(self, bank: PhoneBank, joint: JointPhone) -> None:
        self.bank, self.joint, self.book = bank, joint, joint.book
        self.conn = bank.conn
        bank.joint_gate = lambda account: self.book.account(account) is not None
        self.book.on_approved["cardless"] = self.approved

    def confirm(self, request_id: str, quote_id: str, password: str, code: str) -> dict[str, Any]:
        """Prove the request; a pending approval goes to the other co-owners (202)."""
        if not (valid_code(password) and valid_code(code)):
            raise JointError(422, "password and code must be 4 to 12 digits")
        refusal: Refusal | None = None
        with transaction(self.conn):
            self.bank.desk.expire_due()
            request = self.bank._request(request_id, "identified")
            quote = self.conn.execute(
                "SELECT * FROM cardless_quotes WHERE id = ? AND request_id = ?",
                (quote_id, request_id),
            ).fetchone()
            if quote is None:
                raise JointError(404, "no such quote for this request")
            account = quote["account_id"]
            row = self.book.account(account)
            if row is None:
                raise JointError(409, "not a joint account: confirm the quote as usual")
            waiting = self._latest(request_id)
            if waiting is not None and waiting["status"] in ("pending", "approved"):
                raise JointError(409, f"approval {waiting['id']} is still {waiting['status']}")
            self.bank._priced(request, account, quote["amount"], quote["method"])  # funds
            own = {o["person_id"]: o["code_offset"] for o in self.book.owners(account)}
            mine = own.get(request["person_id"])
            pvk = self.joint.keys.pvk
            password_ok = verify_ibm3624(password, account, pvk, row["password_offset"])
            try:
                requester = self.book.identify(
                    row,
                    password_ok,
                    # every offset is checked (no early exit); only the session's own counts
                    lambda offset: verify_ibm3624(code, account, pvk, offset) and offset == mine,
                )
            except Refusal as exc:
                refusal = exc  # the failure count commits with this transaction
            else:
                approval = self.book.request_approval(
                    account, requester, "cardless", quote["amount"], target=quote_id
                )
                return self._status(request_id, approval)
        assert refusal is not None  # the only way here: a refusal, committed with its count
        raise JointError(refusal.status, refusal.reason)

    def status(self, request_id: str) -> dict[str, Any]:
        """The phone's view: the approval and, once frozen, the reservation."""
        with transaction(self.conn):
            self.bank.desk.expire_due()
            if self.bank._find(request_id) is None:
                raise JointError(404, "no such cardless request")
            approval = self._latest(request_id)
            if approval is None:
                raise JointError(404, "no joint reservation asked for on this request")
            return self._status(request_id, self.book.approval(approval["id"]))

    def approved(self, approval: sqlite3.Row) -> None:
        """The first approval: freeze the quote now (the requester is not waiting at an
        ATM). If it cannot be frozen any more the approval ends, nothing held."""
        quote = self.conn.execute(
            "SELECT * FROM cardless_quotes WHERE id = ?", (approval["target"],)
        ).fetchone()
        try:
            request = self.bank._request(quote["request_id"], "identified")
            self.bank.reserve_quote(request, quote)
        except PhoneError as exc:
            self.book.cancel(approval, f"could not be reserved: {exc}")
            return
        self.book.use(approval)
        self.bank._sent()  # the SMS with the collection code (the worker also polls)

    def _latest(self, request_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT a.* FROM joint_approvals a JOIN cardless_quotes q ON q.id = a.target"
            " WHERE a.kind = 'cardless' AND q.request_id = ? ORDER BY a.created_at DESC,"
            " a.expires_at DESC",
            (request_id,),
        ).fetchone()
        return row

    def _status(self, request_id: str, approval: sqlite3.Row) -> dict[str, Any]:
        status = {"pending": "awaiting_approval", "approved": "awaiting_approval"}.get(
            approval["status"], approval["status"]
        )
        reservation = None
        if approval["status"] == "used":
            found = self.conn.execute(
                "SELECT reservation_id FROM cardless_requests WHERE id = ?", (request_id,)
            ).fetchone()
            if found is not None and found["reservation_id"]:
                reservation = self.bank._view(self.bank.desk.reservation(found["reservation_id"]))
                status = "reserved"
        return {
            "request_id": request_id,
            "status": status,
            "approval": self.joint.view(approval),
            "reservation": reservation,
        }
