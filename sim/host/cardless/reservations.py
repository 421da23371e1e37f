"""Reservations and their holds: the ledger side of cardless withdrawal.

A reservation freezes amount + fee as a *pending transfer* into the clearing account (a
hold, never edited: posted when the cash comes out, voided when the reservation is
cancelled or expires) and records which phone may collect it, how (code, face or both)
and until when. :class:`ReservationBook` creates and ends them and sweeps the expired
ones; the phone steps (:mod:`.phone`) reserve and cancel through it, and the ATM's desk
(:class:`sim.host.cardless.iso.CardlessDesk`) is a book that also answers the ATM.
Everything runs inside the caller's transaction except :meth:`ReservationBook.sweep`.
"""

from __future__ import annotations

import logging
import random
import secrets
import sqlite3
from typing import Any

from atm_common.clock import Clock
from atm_common.crypto.pinblock import ibm3624_offset
from host_link.cardless import cardless_pan, phone_digits
from sim.host.cardless.schema import (
    CLEARING_ACCOUNT,
    HOLD_KIND,
    ensure_accounts,
    ensure_schema,
    record_event,
)
from sim.host.cardless.throttle import PhoneGuard
from sim.host.ledger import Ledger, transaction
from sim.host.settings import HostKeys, HostSettings

log = logging.getLogger(__name__)


class ReservationBook:
    """Cardless reservations and their holds, on the host's connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        settings: HostSettings,
        clock: Clock,
        ledger: Ledger,
        rng: random.Random | None = None,
    ) -> None:
        self.conn, self.keys = conn, keys
        self.host_settings, self.settings = settings, settings.cardless
        self.clock, self.ledger = clock, ledger
        self.rng = rng or secrets.SystemRandom()
        ensure_schema(conn)
        # one count of failed checks per phone, whether the phone or an ATM failed it
        self.guard = PhoneGuard(conn, clock, self.settings.lockout_failures)

    def event(self, kind: str, **context: Any) -> None:
        record_event(self.conn, self.clock, kind, **context)

    def now(self) -> float:
        return self.clock.now().timestamp()

    def token(self) -> str:
        """An unguessable id (80 bits) from the injected random source."""
        return f"{self.rng.getrandbits(80):020x}"

    # -- the lifecycle (in the caller's transaction; sweep opens its own) --------------

    def reserve(
        self,
        *,
        request_id: str,
        person_id: str,
        phone: str,
        account_id: str,
        amount: int,
        fee: int,
        currency: str,
        method: str,
        hold_minutes: float | None = None,
    ) -> tuple[sqlite3.Row, str | None]:
        """Hold amount + fee and create the reservation; returns it and the code (only
        for code methods: this is the one moment the code exists in clear)."""
        ensure_accounts(self.conn, currency)
        hold = self.ledger.transfer(
            account_id, CLEARING_ACCOUNT, amount + fee, kind=HOLD_KIND, pending=True
        )
        code = offset = None
        if method in ("code", "both"):
            code = f"{self.rng.randrange(1_000_000):06d}"
            offset = ibm3624_offset(code, cardless_pan(phone), self.keys.pvk)
        reservation_id = self.token()
        window = min(hold_minutes or self.settings.hold_minutes, self.settings.hold_minutes)
        expires = self.now() + window * 60
        self.conn.execute(
            "INSERT INTO reservations (id, request_id, person_id, phone, account_id, amount,"
            " fee, currency, method, code_offset, hold_transfer_id, status, expires_at,"
            " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'active',?,?)",
            (
                reservation_id,
                request_id,
                person_id,
                phone_digits(phone),
                account_id,
                amount,
                fee,
                currency,
                method,
                offset,
                hold,
                expires,
                self.clock.now().isoformat(),
            ),
        )
        self._link(reservation_id, hold, "hold")
        self.event(
            "reserved",
            person_id=person_id,
            request_id=request_id,
            reservation_id=reservation_id,
            account=account_id,
            amount=amount,
            fee=fee,
            method=method,
            hold_transfer_id=hold,
        )
        return self.reservation(reservation_id), code

    def reservation(self, reservation_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            raise KeyError(reservation_id)
        return row

    def close(self, row: sqlite3.Row, status: str, reason: str, terminal_id: str = "") -> None:
        """End an active reservation without cash: void its hold (never edit it)."""
        if status not in ("cancelled", "expired"):
            raise ValueError(f"close() is for cancelled or expired, not {status}")
        self.ledger.settle(row["hold_transfer_id"], post=False)
        self.conn.execute(
            "UPDATE reservations SET status = ?, closed_at = ? WHERE id = ? AND status = 'active'",
            (status, self.clock.now().isoformat(), row["id"]),
        )
        self.event(
            status,
            person_id=row["person_id"],
            reservation_id=row["id"],
            terminal_id=terminal_id or None,
            reason=reason,
            released=row["amount"] + row["fee"],
        )

    def expire_due(self) -> int:
        """Expire every active reservation past its time (inside a transaction)."""
        due = self.conn.execute(
            "SELECT * FROM reservations WHERE status = 'active' AND expires_at <= ?",
            (self.now(),),
        ).fetchall()
        for row in due:
            self.close(row, "expired", "reservation time ran out")
        return len(due)

    def sweep(self) -> int:
        """Release the holds of expired reservations; the host calls this periodically
        (and every access expires what is due first), so an abandoned reservation never
        freezes money longer than ``hold_minutes`` plus one sweep interval."""
        with transaction(self.conn):
            expired = self.expire_due()
        if expired:
            log.info("cardless sweep: %d reservation(s) expired, holds released", expired)
        return expired

    def _link(self, reservation_id: str, transfer_id: int, role: str) -> None:
        self.conn.execute(
            "INSERT INTO reservation_transfers VALUES (?,?,?)", (transfer_id, reservation_id, role)
        )
