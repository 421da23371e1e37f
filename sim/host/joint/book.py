"""Who is asking, the failure count and the lock, approvals, and binding a co-owner.

:class:`JointBook` is the bank's side of a joint account that both channels share: the
ATM's requests (:mod:`.iso`) and the phone API (:mod:`.api`) each turn their own
credentials into "is the password the account's, and whose code is this?" and hand the
answer here. Every method runs in the caller's transaction. A refusal is a
:class:`~sim.host.joint.notices.Refusal` carrying both the ISO response code and the HTTP
status, so the two channels answer alike; the only thing a refused request changes is the
failure count (and, past the threshold, the lock), which the caller commits before it
answers.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable

from atm_common.clock import Clock
from sim.host.joint.core import CoreBanking, send_bill
from sim.host.joint.notices import (
    EXPIRED,
    LOCKED,
    NOT_VALID,
    SAID,
    WRONG,
    Refusal,
    describe,
    notify,
)
from sim.host.ledger import Ledger, balance_of
from sim.host.settings import HostSettings

__all__ = ["JointBook"]


class JointBook:
    def __init__(self, conn: sqlite3.Connection, settings: HostSettings, clock: Clock) -> None:
        self.conn, self.settings, self.clock = conn, settings, clock
        self.joint = settings.joint
        self.core = CoreBanking(conn, settings.joint)
        self.ledger = Ledger(conn, clock)
        # what an approval of another kind carries out, in the decision's transaction
        # (``cardless``: the reservation is frozen, sim/host/joint/cardless.py)
        self.on_approved: dict[str, Callable[[sqlite3.Row], None]] = {}

    # -- the account and its co-owners ------------------------------------------------

    def account(self, account: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM joint_accounts WHERE account_id = ?", (account,)
        ).fetchone()
        return row

    def owners(self, account: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT o.person_id, o.code_offset, p.phone FROM joint_owners o"
            " JOIN persons p ON p.id = o.person_id WHERE o.account_id = ? ORDER BY o.person_id",
            (account,),
        ).fetchall()

    def is_owner(self, account: str, person: str) -> bool:
        return any(o["person_id"] == person for o in self.owners(account))

    def refuse_if_locked(self, row: sqlite3.Row) -> None:
        if row["locked_at"] is not None:
            raise Refusal(LOCKED, 423, f"joint account {row['account_id']} is locked")

    # -- who is asking ----------------------------------------------------------------

    def identify(
        self, row: sqlite3.Row, password_ok: bool, code_matches: Callable[[str], bool]
    ) -> str:
        """The co-owner whose code this is, when the password is the account's too.

        Every owner's code is checked (no early exit: the time taken does not tell
        which co-owner matched). A failure is counted on the account; the one past
        ``failures_allowed`` locks it and tells every co-owner (the caller commits,
        then answers with the :class:`Refusal` raised here)."""
        self.refuse_if_locked(row)
        account = row["account_id"]
        matched = [o["person_id"] for o in self.owners(account) if code_matches(o["code_offset"])]
        if password_ok and len(matched) == 1:
            if row["failures"]:
                self.conn.execute(
                    "UPDATE joint_accounts SET failures = 0 WHERE account_id = ?", (account,)
                )
            return str(matched[0])
        failures = row["failures"] + 1
        if failures > self.joint.failures_allowed:
            now = self.clock.now().isoformat(timespec="seconds")
            self.conn.execute(
                "UPDATE joint_accounts SET failures = ?, locked_at = ? WHERE account_id = ?",
                (failures, now, account),
            )
            self._cancel_pending(account, "the account was locked")
            for owner in self.owners(account):
                notify(
                    self.conn,
                    self.clock,
                    owner,
                    "lock",
                    account,
                    f"Your bank: joint account {account} was locked at {now[:16]} UTC after"
                    f" {failures} failed verifications. Contact the bank to unlock it.",
                )
            raise Refusal(LOCKED, 423, f"joint account {account} is now locked")
        self.conn.execute(
            "UPDATE joint_accounts SET failures = ? WHERE account_id = ?", (failures, account)
        )
        left = self.joint.failures_allowed + 1 - failures
        raise Refusal(WRONG, 403, f"wrong password or code ({left} more before the lock)")

    def unlock(self, account: str) -> bool:
        """The bank unlocks (the only way: see docs/joint-accounts.md) and tells every
        co-owner; True if it was locked."""
        unlocked = (
            self.conn.execute(
                "UPDATE joint_accounts SET failures = 0, locked_at = NULL"
                " WHERE account_id = ? AND locked_at IS NOT NULL",
                (account,),
            ).rowcount
            > 0
        )
        if unlocked:
            for owner in self.owners(account):
                notify(
                    self.conn,
                    self.clock,
                    owner,
                    "unlock",
                    account,
                    f"Your bank: joint account {account} is unlocked.",
                )
        return unlocked

    # -- approvals --------------------------------------------------------------------

    def request_approval(
        self,
        account: str,
        requester: str,
        kind: str,
        amount: int,
        *,
        terminal: str | None = None,
        target: str | None = None,
        target_offset: str | None = None,
        seconds: float | None = None,
    ) -> sqlite3.Row:
        """A pending approval, and its request sent to every other co-owner."""
        approval_id = secrets.token_hex(10)
        now = self.clock.now()
        ttl = self.joint.approval_seconds if seconds is None else seconds
        self.conn.execute(
            "INSERT INTO joint_approvals (id, account_id, requester, kind, amount, terminal_id,"
            " target, target_offset, status, created_at, expires_at)"
            " VALUES (?,?,?,?,?,?,?,?,'pending',?,?)",
            (
                approval_id,
                account,
                requester,
                kind,
                amount,
                terminal,
                target,
                target_offset,
                now.isoformat(timespec="seconds"),
                now.timestamp() + ttl,
            ),
        )
        what = describe(kind, amount, target, self.settings.currency)
        where = f" at ATM {terminal}" if terminal else ""
        for owner in self.owners(account):
            if owner["person_id"] == requester:
                continue
            notify(
                self.conn,
                self.clock,
                owner,
                "approval",
                account,
                f"Your bank: {requester} asks for {what} on joint account {account}{where}."
                f" Approve or reject in the bank app within {int(ttl)} s.",
                approval_id=approval_id,
            )
        return self.approval(approval_id)

    def approval(self, approval_id: str) -> sqlite3.Row:
        """The approval (expired first if its time is up); KeyError when unknown."""
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM joint_approvals WHERE id = ?", (approval_id,)
        ).fetchone()
        if row is None:
            raise KeyError(approval_id)
        if (
            row["status"] in ("pending", "approved")
            and row["expires_at"] < self.clock.now().timestamp()
        ):
            self._end(row, "expired", None)
            row = self.conn.execute(
                "SELECT * FROM joint_approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        assert row is not None
        return row

    def pending_for(self, person: str) -> list[sqlite3.Row]:
        """What waits for ``person``'s decision: others' requests on accounts they co-own."""
        rows = self.conn.execute(
            "SELECT a.id FROM joint_approvals a JOIN joint_owners o"
            " ON o.account_id = a.account_id AND o.person_id = ?"
            " WHERE a.status = 'pending' AND a.requester <> ?"
            " AND NOT EXISTS (SELECT 1 FROM joint_votes v WHERE v.approval_id = a.id"
            " AND v.person_id = ?) ORDER BY a.created_at",
            (person, person, person),
        ).fetchall()
        out = [self.approval(r["id"]) for r in rows]
        return [r for r in out if r["status"] == "pending"]

    def decide(self, approval_id: str, person: str, approve: bool) -> sqlite3.Row:
        """A co-owner's decision. The first approval grants an operation; a binding needs
        every existing co-owner's; any rejection ends either."""
        try:
            row = self.approval(approval_id)
        except KeyError:
            raise Refusal(NOT_VALID, 404, "no such approval") from None
        if not self.is_owner(row["account_id"], person):
            raise Refusal(NOT_VALID, 403, "only a co-owner of the account may decide")
        if row["requester"] == person:
            raise Refusal(NOT_VALID, 403, "the requester cannot decide their own request")
        if row["status"] == "expired":
            raise Refusal(EXPIRED, 410, "the approval has expired")
        if row["status"] != "pending":
            raise Refusal(NOT_VALID, 409, f"the approval is already {row['status']}")
        if row["kind"] == "bind":
            return self._vote(row, person, approve)
        self._end(row, "approved" if approve else "rejected", person)
        if approve and row["kind"] == "transfer":
            self._transfer(row)
        elif approve and row["kind"] in self.on_approved:
            self.on_approved[row["kind"]](self.approval(approval_id))
        return self.approval(approval_id)

    def use(self, row: sqlite3.Row) -> None:
        """An approved operation is carried out: the approval cannot grant another."""
        self.conn.execute(
            "UPDATE joint_approvals SET status = 'used' WHERE id = ? AND status = 'approved'",
            (row["id"],),
        )

    def cancel(self, row: sqlite3.Row, why: str) -> bool:
        if row["status"] not in ("pending", "approved"):
            return False
        self._end(row, "cancelled", None, why)
        return True

    def bill(
        self, row: sqlite3.Row | None, account: str, operation: str, amount: int, place: str
    ) -> str:
        currency = self.conn.execute(
            "SELECT currency FROM accounts WHERE id = ?", (account,)
        ).fetchone()["currency"]
        return send_bill(
            self.conn,
            self.clock,
            self.core,
            account=account,
            operation=operation,
            amount=amount,
            currency=currency,
            place=place,
            approval_id=row["id"] if row is not None else None,
        )

    # -- internals --------------------------------------------------------------------

    def _end(self, row: sqlite3.Row, status: str, person: str | None, why: str = "") -> None:
        self.conn.execute(
            "UPDATE joint_approvals SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?",
            (status, person, self.clock.now().isoformat(timespec="seconds"), row["id"]),
        )
        requester = self.conn.execute(
            "SELECT id AS person_id, phone FROM persons WHERE id = ?", (row["requester"],)
        ).fetchone()
        if requester is not None:
            what = describe(row["kind"], row["amount"], row["target"], self.settings.currency)
            notify(
                self.conn,
                self.clock,
                requester,
                "outcome",
                row["account_id"],
                f"Your bank: your request for {what} on joint account {row['account_id']}"
                f" is {SAID.get(status, status)}{' by ' + person if person else ''}"
                f"{': ' + why if why else ''}.",
                approval_id=row["id"],
            )

    def _cancel_pending(self, account: str, why: str) -> None:
        for r in self.conn.execute(
            "SELECT * FROM joint_approvals WHERE account_id = ? AND status IN"
            " ('pending', 'approved')",
            (account,),
        ).fetchall():
            self._end(r, "cancelled", None, why)

    def _vote(self, row: sqlite3.Row, person: str, approve: bool) -> sqlite3.Row:
        self.conn.execute(
            "INSERT INTO joint_votes VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (row["id"], person, "approve" if approve else "reject", self.clock.now().isoformat()),
        )
        if not approve:
            self._end(row, "rejected", person)
            return self.approval(row["id"])
        (votes,) = self.conn.execute(
            "SELECT COUNT(*) FROM joint_votes v JOIN joint_owners o ON o.person_id = v.person_id"
            " AND o.account_id = ? WHERE v.approval_id = ? AND v.decision = 'approve'",
            (row["account_id"], row["id"]),
        ).fetchone()
        if votes >= len(self.owners(row["account_id"])):
            now = self.clock.now().isoformat(timespec="seconds")
            self.conn.execute(
                "INSERT INTO joint_owners VALUES (?,?,?,?)",
                (row["account_id"], row["target"], row["target_offset"], now),
            )
            self.conn.execute(
                "INSERT INTO ownership VALUES (?, ?) ON CONFLICT DO NOTHING",
                (row["target"], row["account_id"]),
            )
            self._end(row, "used", person, "every co-owner authorised: bound")
            for owner in self.owners(row["account_id"]):
                notify(
                    self.conn,
                    self.clock,
                    owner,
                    "bound",
                    row["account_id"],
                    f"Your bank: {row['target']} is now a co-owner of joint account"
                    f" {row['account_id']}.",
                )
        return self.approval(row["id"])

    def _transfer(self, row: sqlite3.Row) -> None:
        account = self.conn.execute(
            "SELECT * FROM accounts WHERE id = ?", (row["account_id"],)
        ).fetchone()
        if balance_of(account).available < row["amount"]:
            self._end(row, "cancelled", None, "insufficient funds when approved")
            return
        self.ledger.transfer(row["account_id"], row["target"], row["amount"], kind="transfer")
        self.use(self.approval(row["id"]))
        self.bill(row, row["account_id"], "transfer", row["amount"], "phone banking")
