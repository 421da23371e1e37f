"""The phone's side of a cardless withdrawal at the bank: one session per request.

Steps, each one SQLite transaction (with its journal event and any SMS):
request (an SMS code goes out) -> verify the code -> consent + face capture, checked
against the enrolled template (those three: :mod:`.verification`) -> accounts -> quote
(fee by the account's card product) -> confirm (hold + reservation; the code, for code
methods, is returned once and sent by SMS) -> status / cancel.

:class:`PhoneBank` is the business logic behind the HTTP API (:mod:`sim.host.api`). It
leaves pricing to :mod:`.fees`, texts to :mod:`.sms` and the hold to the
:class:`~sim.host.cardless.reservations.ReservationBook`. Refusals are
:class:`~sim.host.cardless.errors.PhoneError` subclasses carrying the HTTP status; a
refused step changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from sim.host.cardless import fees, sms
from sim.host.cardless.errors import Conflict, Forbidden, NotFound
from sim.host.cardless.verification import PhoneVerification, utc_iso
from sim.host.ledger import transaction

__all__ = ["PhoneBank"]

_BANK_ONLY = frozenset({"distance", "tolerance"})  # journal details the phone is not shown


class PhoneBank(PhoneVerification):
    """The bank's phone-facing cardless service, on the host's connection.

    Not thread-safe: call it from the host's event loop (the API's handlers are async
    and do only the face detection in a worker thread, never the database work).
    """

    # Is this account co-managed (set by the host's wiring, sim/host/joint/cardless.py)?
    # Then the plain confirmation is refused: a joint reservation needs the account's
    # password, the requester's own code and another co-owner's approval.
    joint_gate: Callable[[str], bool] | None = None

    # -- 3. accounts, quote, confirm ----------------------------------------------------

    def accounts(self, request_id: str) -> list[dict[str, Any]]:
        row = self._request(request_id, "identified")
        return fees.customer_accounts(self.conn, row["person_id"])

    def _priced(self, row: sqlite3.Row, account: str, amount: int, method: str) -> dict[str, Any]:
        """Validate and price for the session's customer; raises without changing anything."""
        currency = self.desk.host_settings.currency
        return fees.price(
            self.conn, self.settings, currency, row["person_id"], account, amount, method
        )

    def quote(
        self,
        request_id: str,
        account: str,
        amount: int,
        method: str,
        hold_minutes: float | None = None,
    ) -> dict[str, Any]:
        """Price a withdrawal. ``hold_minutes``: collect within this window (at most the
        bank's own), after which the reservation lapses and the hold is released."""
        with transaction(self.conn):
            row = self._request(request_id, "identified")
            priced = self._priced(row, account, amount, method)
            quote_id = self.desk.token()
            self.conn.execute(
                "INSERT INTO cardless_quotes VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    quote_id,
                    request_id,
                    account,
                    amount,
                    priced["fee"],
                    priced["currency"],
                    method,
                    priced["card_product"],
                    self.clock.now().isoformat(),
                    hold_minutes,
                ),
            )
            self.desk.event(
                "quoted",
                person_id=row["person_id"],
                request_id=request_id,
                **{k: priced[k] for k in ("account", "amount", "fee", "method", "card_product")},
            )
        return {"quote_id": quote_id, **priced}

    def confirm(self, request_id: str, quote_id: str) -> dict[str, Any]:
        """Hold amount + fee and reserve; the quoted fee is the fee (re-checked funds)."""
        with transaction(self.conn):
            self.desk.expire_due()
            row = self._request(request_id, "identified")
            quote = self.conn.execute(
                "SELECT * FROM cardless_quotes WHERE id = ? AND request_id = ?",
                (quote_id, request_id),
            ).fetchone()
            if quote is None:
                raise NotFound("no such quote for this request")
            if self.joint_gate is not None and self.joint_gate(quote["account_id"]):
                raise Forbidden(
                    "a joint account: confirm with its password and your own code"
                    " (POST .../joint-reservation)"
                )
            reservation, code = self.reserve_quote(row, quote)
        self._sent()
        return self._view(reservation) | {"code": code}

    def reserve_quote(self, row: sqlite3.Row, quote: sqlite3.Row) -> tuple[sqlite3.Row, str | None]:
        """Freeze a quote (in the caller's transaction): re-price, hold, reserve, SMS."""
        priced = self._priced(row, quote["account_id"], quote["amount"], quote["method"])
        if priced["fee"] != quote["fee"]:
            raise Conflict("the fee changed since the quote: ask for a new quote")
        active = self.conn.execute(
            "SELECT id FROM reservations WHERE phone = ? AND status = 'active'",
            (row["phone"],),
        ).fetchone()
        if active is not None:
            raise Conflict(f"reservation {active['id']} is still active: cancel it first")
        reservation, code = self.desk.reserve(
            request_id=row["id"],
            person_id=row["person_id"],
            phone=row["phone"],
            account_id=quote["account_id"],
            amount=quote["amount"],
            fee=quote["fee"],
            currency=quote["currency"],
            method=quote["method"],
            hold_minutes=quote["hold_minutes"],
        )
        self.conn.execute(
            "UPDATE cardless_requests SET status = 'reserved', reservation_id = ? WHERE id = ?",
            (reservation["id"], row["id"]),
        )
        text = sms.reservation_text(
            quote["amount"],
            quote["fee"],
            quote["currency"],
            utc_iso(reservation["expires_at"])[:16],
            code,
        )
        self._sms(row["phone"], text, "reservation")
        return reservation, code

    # -- 4. the reservation -------------------------------------------------------------

    def _view(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "reservation_id": row["id"],
            "status": row["status"],
            "account": row["account_id"],
            "amount": row["amount"],
            "fee": row["fee"],
            "total": row["amount"] + row["fee"],
            "currency": row["currency"],
            "method": row["method"],
            "attempts": row["attempts"],
            "expires_at": utc_iso(row["expires_at"]),
            "created_at": row["created_at"],
            "terminal_id": row["terminal_id"],
            "refunded": row["refunded"],
        }

    def _reservation(self, reservation_id: str) -> sqlite3.Row:
        try:
            return self.desk.reservation(reservation_id)
        except KeyError:
            raise NotFound("no such reservation") from None

    def reservation(self, reservation_id: str) -> dict[str, Any]:
        with transaction(self.conn):
            self.desk.expire_due()
            return self._view(self._reservation(reservation_id))

    def cancel(self, reservation_id: str) -> dict[str, Any]:
        with transaction(self.conn):
            self.desk.expire_due()
            row = self._reservation(reservation_id)
            if row["status"] != "active":
                raise Conflict(f"reservation is {row['status']}: nothing to cancel")
            self.desk.close(row, "cancelled", "cancelled on the phone")
            return self._view(self._reservation(reservation_id))

    def events(self, reservation_id: str) -> list[dict[str, Any]]:
        """The bank-side journal of a reservation, from its request to its end; without
        face distances, which the phone is never told (the bank keeps them)."""
        row = self._reservation(reservation_id)
        rows = self.conn.execute(
            "SELECT * FROM cardless_events WHERE reservation_id = ?"
            " OR (request_id = ? AND request_id IS NOT NULL) ORDER BY id",
            (reservation_id, row["request_id"]),
        ).fetchall()
        return [
            {
                "at": r["at"],
                "kind": r["kind"],
                "terminal_id": r["terminal_id"],
                "detail": {k: v for k, v in json.loads(r["detail"]).items() if k not in _BANK_ONLY},
            }
            for r in rows
        ]
