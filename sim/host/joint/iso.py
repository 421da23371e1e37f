"""The ATM's side of a joint account: the authoriser's hook, not a second authoriser.

The authoriser verifies the card and the PIN (the account's password: every co-owner's
card is issued with it) as for any card, then hands the request here
(:meth:`JointDesk.gate`). For a card on a joint account this decides, from field 61:

- no personal code yet: ``1A`` (the terminal asks for it on the PIN pad, as a second PIN
  block, and sends the request again);
- the code is no co-owner's: the failure counts on the account (``55``, or ``J1`` once it
  is locked, after telling every co-owner);
- the verification 0100 (no ``OP``): approved like any card (who is asking is known);
- a withdrawal (0200) or a balance (0100 with ``OP=B``) without a reference: a pending
  approval is created, every other co-owner asked, and the answer is ``09`` with the
  reference (``AR``) and the seconds left (``EX``) in field 61;
- the same request with ``AR``: ``09`` while pending; once approved, the normal path (the
  authoriser debits and answers ``00``), and :meth:`finished` sends the bill; ``J2``
  rejected, ``J3`` expired, ``J4`` cancelled, used, or bound to another operation.

A reversal of a request answered ``09`` cancels its approval (:meth:`cancel_by_reversal`):
the terminal's cancel key and any doubt on the link end the same way, with no hold.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping

from atm_common.clock import Clock
from atm_common.errors import KeyUnavailable
from host_link.codec import Message
from host_link.codes import Mti
from host_link.joint import format_field61, parse_field61
from sim.host.cardless.tokens import redact
from sim.host.joint.book import JointBook
from sim.host.joint.notices import (
    CODE_REQUIRED,
    EXPIRED,
    IN_PROGRESS,
    NOT_VALID,
    REJECTED,
    Refusal,
)
from sim.host.joint.schema import ensure_schema
from sim.host.keys import KeyStore
from sim.host.rules import CardSession, Decline
from sim.host.settings import HostKeys, HostSettings

__all__ = ["JointDecline", "JointDesk"]

log = logging.getLogger(__name__)


class JointDecline(Decline):
    """A decline with response fields of its own (field 61 of a ``09``)."""

    def __init__(self, code: str, reason: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(code, reason)
        self.fields = dict(fields or {})


def _decline(refusal: Refusal) -> JointDecline:
    return JointDecline(refusal.code, refusal.reason)


class JointDesk:
    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        store: KeyStore,
        settings: HostSettings,
        clock: Clock,
    ) -> None:
        self.conn, self.keys, self.store, self.clock = conn, keys, store, clock
        ensure_schema(conn)
        self.book = JointBook(conn, settings, clock)
        self._granted: sqlite3.Row | None = None

    def _joint_of_card(self, request: Message) -> sqlite3.Row | None:
        pan = request.get("2", "")
        if not pan:
            return None
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT j.* FROM joint_accounts j JOIN card_accounts ca ON ca.account_id ="
            " j.account_id WHERE ca.pan_ref = ? ORDER BY ca.is_default DESC LIMIT 1",
            (self.keys.pan_ref(pan),),
        ).fetchone()
        return row

    # -- hooks, in the order the authoriser calls them -----------------------------------

    def before_pin(self, request: Message) -> None:
        """A locked joint account refuses everything, the right password included."""
        self._granted = None
        row = self._joint_of_card(request)
        if row is not None:
            try:
                self.book.refuse_if_locked(row)
            except Refusal as refusal:
                raise _decline(refusal) from None

    def pin_failed(self, request: Message, decline: Decline) -> None:
        """A wrong password on a joint account counts on the account too; the failure
        that locks it answers ``J1`` (the card's own count still runs)."""
        if decline.code not in ("55", "75"):
            return
        row = self._joint_of_card(request)
        if row is None:
            return
        try:
            self.book.identify(row, False, lambda _offset: False)
        except Refusal as refusal:
            if refusal.code != "55":
                raise _decline(refusal) from None

    def gate(self, request: Message, session: CardSession) -> None:
        """Pass (return) or decline: see the module's docstring."""
        row = self.book.account(session.account)
        if row is None:
            return
        fields = parse_field61(request.get("61", ""))
        if fields is None:
            raise JointDecline("30", "field 61 malformed")
        block = fields.get("CB", "")
        if not block:
            raise JointDecline(CODE_REQUIRED, "a personal code is required")
        try:
            requester = self.book.identify(row, True, self._code_check(request, fields))
        except Refusal as refusal:
            raise _decline(refusal) from None
        if fields.get("ST"):
            self._status(request, fields.get("AR", ""), row, requester)
        kind = self._kind(request, fields)
        if kind is None:
            return  # the verification 0100: the co-owner is known, nothing is granted
        field4 = request.get("4", "")
        if kind == "withdrawal" and not (field4.isascii() and field4.isdigit()):
            raise JointDecline("13", "amount must be a number of minor units")
        amount = int(field4) if kind == "withdrawal" else 0
        ref = fields.get("AR", "")
        if not ref:
            approval = self.book.request_approval(
                row["account_id"], requester, kind, amount, terminal=request.get("41")
            )
            self._in_progress(request, approval)
        try:
            approval = self.book.approval(ref)
        except KeyError:
            raise JointDecline(NOT_VALID, "unknown approval reference") from None
        bound = (
            approval["account_id"] == row["account_id"]
            and approval["terminal_id"] == request.get("41")
            and approval["kind"] == kind
            and approval["amount"] == amount
            and approval["requester"] == requester
        )
        if not bound:
            raise JointDecline(NOT_VALID, "the approval is for another operation")
        status = approval["status"]
        if status == "pending":
            self._in_progress(request, approval)
        if status == "approved":
            self.book.use(approval)
            self._granted = approval
            return
        code = {"rejected": REJECTED, "expired": EXPIRED}.get(status, NOT_VALID)
        raise JointDecline(code, f"approval {redact(ref)} is {status}")

    def finished(self, request: Message, account: str, amount: int) -> None:
        """The granted operation is done: its bill to every co-owner."""
        granted, self._granted = self._granted, None
        if granted is None:
            return
        self.book.bill(granted, account, granted["kind"], amount, f"ATM {request.get('41', '')}")

    def cardless_collected(self, reservation: sqlite3.Row, terminal: str) -> None:
        """Cash of a cardless reservation came out: on a joint account, its bill."""
        if self.book.account(reservation["account_id"]) is None:
            return
        approval = self.conn.execute(
            "SELECT a.* FROM joint_approvals a JOIN cardless_quotes q ON q.id = a.target"
            " WHERE a.kind = 'cardless' AND a.status = 'used' AND q.request_id = ?",
            (reservation["request_id"],),
        ).fetchone()
        amount = reservation["amount"]
        self.book.bill(approval, reservation["account_id"], "cardless", amount, f"ATM {terminal}")

    def cancel_by_reversal(self, request: Message) -> bool:
        """Is this the reversal of a request answered ``09``? Then its approval ends."""
        original = request.get("90", "")
        if len(original) != 42:
            return False
        poll = self.conn.execute(
            "SELECT approval_id FROM joint_polls WHERE terminal_id = ? AND stan = ?"
            " AND transmission_time = ?",
            (request.get("41", ""), original[4:10], original[10:20]),
        ).fetchone()
        if poll is None:
            return False
        with contextlib.suppress(KeyError):
            self.book.cancel(self.book.approval(poll["approval_id"]), "cancelled at the ATM")
        return True

    def after_reversal(self, transfer_id: int | None) -> None:
        """A reversal credited a joint account: a bill says so."""
        if transfer_id is None:
            return
        row = self.conn.execute(
            "SELECT credit_account, amount, terminal_id FROM transfers WHERE id = ?",
            (transfer_id,),
        ).fetchone()
        if row is not None and self.book.account(row["credit_account"]) is not None:
            place = f"ATM {row['terminal_id']}"
            self.book.bill(None, row["credit_account"], "reversal", row["amount"], place)

    # -- internals ----------------------------------------------------------------------

    def _kind(self, request: Message, fields: Mapping[str, str]) -> str | None:
        if request.get("t") == Mti.FINANCIAL_REQUEST:
            return "withdrawal"
        return "balance" if fields.get("OP") == "B" else None

    def _status(self, request: Message, ref: str, row: sqlite3.Row, requester: str) -> None:
        """A status inquiry (0100, ``ST=1``): moves nothing, and its answer is decided
        here: ``09`` pending, ``00`` approved (send the operation again), else why not."""
        try:
            approval = self.book.approval(ref)
        except KeyError:
            raise JointDecline(NOT_VALID, "unknown approval reference") from None
        if (
            approval["account_id"] != row["account_id"]
            or approval["terminal_id"] != request.get("41")
            or approval["requester"] != requester
        ):
            raise JointDecline(NOT_VALID, "the approval is for another operation")
        status = approval["status"]
        left = max(0, int(approval["expires_at"] - self.clock.now().timestamp()))
        answer = {"61": format_field61({"AR": approval["id"], "EX": str(left)})}
        if status in ("pending", "approved"):
            code = IN_PROGRESS if status == "pending" else "00"
            raise JointDecline(code, f"approval {status}", answer)
        code = {"rejected": REJECTED, "expired": EXPIRED}.get(status, NOT_VALID)
        raise JointDecline(code, f"approval {redact(ref)} is {status}")

    def _in_progress(self, request: Message, approval: sqlite3.Row) -> None:
        self.conn.execute(
            "INSERT INTO joint_polls VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (request.get("41", ""), request.get("11", ""), request.get("7", ""), approval["id"]),
        )
        left = max(0, int(approval["expires_at"] - self.clock.now().timestamp()))
        raise JointDecline(
            IN_PROGRESS,
            "waiting for a co-owner's approval",
            {"61": format_field61({"AR": approval["id"], "EX": str(left)})},
        )

    def _code_check(self, request: Message, fields: Mapping[str, str]) -> Callable[[str], bool]:
        """Does the personal-code block match this offset? (Clear only inside the call.)"""
        block = fields["CB"]
        message = dict(request)
        message.pop("52", None)
        message.pop("110", None)
        message["52" if len(block) == 16 else "110"] = block
        if fields.get("CK"):
            message["53"] = fields["CK"]
        pan = request.get("2", "")
        account = self.conn.execute(
            "SELECT ca.account_id FROM card_accounts ca WHERE ca.pan_ref = ?"
            " ORDER BY ca.is_default DESC LIMIT 1",
            (self.keys.pan_ref(pan),),
        ).fetchone()["account_id"]

        def check(offset: str) -> bool:
            try:
                return self.store.verify_pin(
                    message, pan, self.keys.pvk, offset, validation=account
                )
            except KeyUnavailable as exc:
                log.error("cannot check a personal code: %s", exc)
                return False

        return check
