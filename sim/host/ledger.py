"""Double-entry ledger with two-phase transfers (TigerBeetle's model).

Every movement of money is one transfer from a debit account to a credit account, so the
books balance by construction. A *pending* transfer is a hold: it reserves funds
(``debits_pending``) until it is posted or voided, and is never edited. Account
counters are updated in the same SQLite transaction as the transfer row, and
:meth:`Ledger.check` proves they agree with the transfers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sqlite3
from collections.abc import Iterator

from atm_common.clock import Clock
from sim.host.errors import LedgerError

_savepoints = itertools.count()


@dataclasses.dataclass(frozen=True)
class Balance:
    account: str
    ledger: int  # posted balance in the account's normal direction
    available: int  # ledger less pending holds


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``, rolled back on any error.

    Inside a transaction already (the server's group commit runs each request in one
    shared transaction) it is a ``SAVEPOINT``: an error rolls back this block alone, and
    its work commits with the enclosing transaction. On PostgreSQL ``BEGIN IMMEDIATE``
    takes the host's write lock (:mod:`sim.host.storage.pg`).
    """
    if conn.in_transaction:
        name = f"sp{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Ledger:
    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock

    def open_account(
        self,
        account_id: str,
        *,
        kind: str,
        normal: str,
        currency: str,
        safety_amount: int | None = None,
    ) -> None:
        try:
            self.conn.execute(
                "INSERT INTO accounts (id, kind, normal, currency, safety_amount)"
                " VALUES (?,?,?,?,?)",
                (account_id, kind, normal, currency, safety_amount),
            )
        except sqlite3.IntegrityError as exc:
            raise LedgerError(f"account {account_id} already exists or is invalid: {exc}") from exc

    def transfer(
        self,
        debit: str,
        credit: str,
        amount: int,
        *,
        kind: str,
        pending: bool = False,
        pan_ref: str | None = None,
        terminal_id: str | None = None,
        reverses: int | None = None,
    ) -> int:
        """Record a transfer (inside the caller's transaction); returns its id."""
        if amount <= 0:
            raise LedgerError(f"transfer amount must be positive, got {amount}")
        if debit == credit:
            raise LedgerError("a transfer needs two different accounts")
        accounts = {
            row["id"]: row
            for row in self.conn.execute(
                "SELECT id, currency FROM accounts WHERE id IN (?, ?)", (debit, credit)
            )
        }
        for account in (debit, credit):
            if account not in accounts:
                raise LedgerError(f"unknown account {account}")
        if accounts[debit]["currency"] != accounts[credit]["currency"]:
            raise LedgerError(f"currency differs between {debit} and {credit}")
        now = self.clock.now()
        (transfer_id,) = self.conn.execute(
            "INSERT INTO transfers (debit_account, credit_account, amount, status, kind,"
            " reverses_id, pan_ref, terminal_id, business_date, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                debit,
                credit,
                amount,
                "pending" if pending else "posted",
                kind,
                reverses,
                pan_ref,
                terminal_id,
                now.date().isoformat(),
                now.isoformat(),
            ),
        ).fetchone()
        column = "pending" if pending else "posted"
        self.conn.execute(
            f"UPDATE accounts SET debits_{column} = debits_{column} + ? WHERE id = ?",
            (amount, debit),
        )
        self.conn.execute(
            f"UPDATE accounts SET credits_{column} = credits_{column} + ? WHERE id = ?",
            (amount, credit),
        )
        return int(transfer_id)

    def settle(self, pending_id: int, *, post: bool, amount: int | None = None) -> int | None:
        """Post (all or part of) or void a hold. Returns the posting transfer's id."""
        row = self.conn.execute("SELECT * FROM transfers WHERE id = ?", (pending_id,)).fetchone()
        if row is None or row["status"] != "pending":
            raise LedgerError(f"transfer {pending_id} is not a pending hold")
        held = row["amount"]
        amount = held if amount is None else amount
        if post and not 0 < amount <= held:
            raise LedgerError(f"cannot post {amount} of a hold of {held}")
        for side, account in (("debits", row["debit_account"]), ("credits", row["credit_account"])):
            self.conn.execute(
                f"UPDATE accounts SET {side}_pending = {side}_pending - ? WHERE id = ?",
                (held, account),
            )
        self.conn.execute("UPDATE transfers SET status = 'voided' WHERE id = ?", (pending_id,))
        if not post:
            return None
        posted = self.transfer(
            row["debit_account"],
            row["credit_account"],
            amount,
            kind=row["kind"],
            pan_ref=row["pan_ref"],
            terminal_id=row["terminal_id"],
        )
        self.conn.execute("UPDATE transfers SET pending_id = ? WHERE id = ?", (pending_id, posted))
        return posted

    def balance(self, account_id: str) -> Balance:
        row = self.conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown account {account_id}")
        return balance_of(row)

    def check(self) -> list[str]:
        """Problems found: counters that disagree with the transfers, or unbalanced books."""
        problems: list[str] = []
        for row in self.conn.execute("SELECT * FROM accounts"):
            sums = {}
            for side, column in (("debits", "debit_account"), ("credits", "credit_account")):
                for status in ("posted", "pending"):
                    (total,) = self.conn.execute(
                        f"SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE {column} = ?"
                        " AND status = ?",
                        (row["id"], status),
                    ).fetchone()
                    sums[f"{side}_{status}"] = total
            for key, total in sums.items():
                if row[key] != total:
                    problems.append(f"{row['id']}: {key} is {row[key]} but transfers say {total}")
        (debits, credits) = self.conn.execute(
            "SELECT SUM(debits_posted), SUM(credits_posted) FROM accounts"
        ).fetchone()
        if debits != credits:
            problems.append(f"books do not balance: debits {debits} != credits {credits}")
        return problems


def balance_of(row: sqlite3.Row) -> Balance:
    if row["normal"] == "credit":
        ledger = row["credits_posted"] - row["debits_posted"]
        available = ledger - row["debits_pending"]
    else:
        ledger = row["debits_posted"] - row["credits_posted"]
        available = ledger - row["credits_pending"]
    return Balance(row["id"], ledger, available)
