"""The ATM's side of cardless withdrawal: the ISO 8583 requests the authoriser hands over.

0100 / 319000 finds the phone's reservation and checks the reserved method (a code sent
as a PIN block whose "PAN" is derived from the phone, a face template in field 63, or
both); 0200 / 019000 posts the hold and hands out exactly the reserved amount; a
reversal (0400/0420) of that 0200 refunds what was not dispensed. Failed checks count
and the last one cancels the reservation (voiding its hold). :class:`CardlessDesk` is
the :class:`~sim.host.cardless.reservations.ReservationBook` with this wire side; it only
decides, the authoriser (:mod:`sim.host.authoriser`) builds the response.

Credentials come before answers: the amount and the currency are compared only once the
code or face has passed, so nobody learns the reserved amount (13) without them, and
every failed check is counted (on the reservation, the phone number and the ATM). An ATM
with too many failures in a row is throttled (91) and a locked phone number refused (57)
before anything is checked (:mod:`.throttle`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from atm_common.clock import Clock
from atm_common.errors import AtmError, KeyUnavailable
from host_link.cardless import cardless_pan, parse_field63
from host_link.codec import Message
from host_link.errors import CodecError
from sim.host.cardless.faces import enrolled_template, load_template
from sim.host.cardless.reservations import ReservationBook
from sim.host.cardless.schema import CLEARING_ACCOUNT, FEE_ACCOUNT
from sim.host.cardless.throttle import Limiter, ThrottlePolicy
from sim.host.cardless.tokens import redact
from sim.host.ledger import Ledger
from sim.host.settings import HostKeys, HostSettings

if TYPE_CHECKING:
    from sim.host.keys import KeyStore

__all__ = ["CardlessDesk", "IsoOutcome"]

log = logging.getLogger(__name__)


class Refusal(Exception):
    """An ISO decline with its response code; never leaves this module's handlers."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code


@dataclasses.dataclass(frozen=True)
class IsoOutcome:
    """What the authoriser puts in its response: code, extra fields, the transfer to
    record against the request (the cash posting, or a refund)."""

    code: str
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    transfer_id: int | None = None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class CardlessDesk(ReservationBook):
    """The reservation book that also answers the ATM's cardless requests."""

    # called in the 0200's transaction once the cash of a reservation is posted
    on_withdrawn: Callable[[sqlite3.Row, str], None] | None = None

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        key_store: KeyStore,
        settings: HostSettings,
        clock: Clock,
        ledger: Ledger,
        rng: random.Random | None = None,
        policy: ThrottlePolicy | None = None,
    ) -> None:
        self.key_store = key_store
        super().__init__(conn, keys, settings, clock, ledger, rng)
        self.terminal_failures = Limiter(
            (policy or ThrottlePolicy()).failures_per_terminal,
            clock,
            "failed cardless checks at this ATM",
        )

    # -- ISO 8583: the ATM's requests ---------------------------------------------------

    def handle_inquiry(self, request: Message) -> IsoOutcome:
        """0100 / 319000: find the phone's reservation and check the method. Approved
        with field 4 = the reserved amount, which the 0200 must then ask for."""
        try:
            wire = self._wire(request)
            row = self._active(wire["phone"], request["41"])
            self._check_method(request, wire, row)
            self._check_currency(request, row)  # after the credentials: no free answers
        except Refusal as refusal:
            log.info("cardless inquiry declined %s", redact(str(refusal)))
            return IsoOutcome(refusal.code)
        self.conn.execute(
            "UPDATE reservations SET verified_terminal = ?, verified_at = ? WHERE id = ?",
            (request["41"], self.now(), row["id"]),
        )
        self.event(
            "atm_verified",
            person_id=row["person_id"],
            reservation_id=row["id"],
            terminal_id=request["41"],
            method=row["method"],
        )
        return IsoOutcome("00", {"4": f"{row['amount']:012d}", "49": row["currency"]})

    def handle_withdrawal(self, request: Message) -> IsoOutcome:
        """0200 / 019000: post the hold (amount + fee) and hand out exactly the amount.

        The 0200 must carry the reserved amount. Its credentials are checked again when
        it carries them (a PIN block, FT); without any, this ATM must have passed the
        checks in a 0100 within ``verify_seconds``.
        """
        try:
            wire = self._wire(request)
            terminal = request["41"]
            row = self._active(wire["phone"], terminal)
            if request.get("52") or request.get("110") or "template" in wire:
                self._check_method(request, wire, row)
            elif not self._recently_verified(row, terminal):
                self._fail(row, terminal, "0200 without credentials and no recent 0100")
            # only a caller who passed the checks learns that the amount is not the one
            amount_text = request.get("4", "")
            if not _digits(amount_text) or int(amount_text) != row["amount"]:
                raise Refusal("13", f"0200 for {amount_text or 'no amount'}, reserved otherwise")
            self._check_currency(request, row)
            cash_account = self._cash_account(terminal)
        except Refusal as refusal:
            log.info("cardless withdrawal declined %s", redact(str(refusal)))
            return IsoOutcome(refusal.code)
        posting = self.ledger.settle(row["hold_transfer_id"], post=True)
        assert posting is not None
        cash = self.ledger.transfer(
            CLEARING_ACCOUNT, cash_account, row["amount"], kind="withdrawal", terminal_id=terminal
        )
        self._link(row["id"], posting, "posting")
        self._link(row["id"], cash, "cash")
        if row["fee"]:
            fee = self.ledger.transfer(
                CLEARING_ACCOUNT, FEE_ACCOUNT, row["fee"], kind="fee", terminal_id=terminal
            )
            self._link(row["id"], fee, "fee")
        self.conn.execute(
            "UPDATE reservations SET status = 'used', terminal_id = ?, closed_at = ? WHERE id = ?",
            (terminal, self.clock.now().isoformat(), row["id"]),
        )
        self.event(
            "withdrawn",
            person_id=row["person_id"],
            reservation_id=row["id"],
            terminal_id=terminal,
            amount=row["amount"],
            fee=row["fee"],
            cash_transfer_id=cash,
        )
        if self.on_withdrawn is not None:  # a joint account's bill (sim/host/joint/iso.py)
            self.on_withdrawn(row, terminal)
        return IsoOutcome("00", {"4": f"{row['amount']:012d}", "49": row["currency"]}, cash)

    def original(self, request: Message) -> sqlite3.Row | None:
        """The reservation whose cash posting a reversal's field 90 points at, if any."""
        original = request.get("90", "")
        if len(original) != 42 or not _digits(original[:20]):
            return None  # not ours to judge: the card rules answer 30
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT v.* FROM requests r"
            " JOIN reservation_transfers rt ON rt.transfer_id = r.transfer_id AND rt.role = 'cash'"
            " JOIN reservations v ON v.id = rt.reservation_id"
            " WHERE r.terminal_id = ? AND r.stan = ? AND r.transmission_time = ?",
            (request.get("41", ""), original[4:10], original[10:20]),
        ).fetchone()
        return row

    def reverse(self, request: Message, row: sqlite3.Row) -> IsoOutcome:
        """Refund what the ATM did not dispense, like any withdrawal reversal; the fee
        too when nothing came out (a partial dispense keeps it: the service was used)."""
        links = {
            r["role"]: r["transfer_id"]
            for r in self.conn.execute(
                "SELECT role, transfer_id FROM reservation_transfers WHERE reservation_id = ?",
                (row["id"],),
            )
        }
        cash_id = links["cash"]
        if self.conn.execute(
            "SELECT 1 FROM transfers WHERE reverses_id = ?", (cash_id,)
        ).fetchone():
            return IsoOutcome("00")  # already reversed: a repeat or an advice after a 0400
        dispensed = 0
        if request.get("95"):
            if not _digits(request["95"][:12]):
                return IsoOutcome("30")
            dispensed = int(request["95"][:12])
        refund = row["amount"] - dispensed
        if refund < 0:
            return IsoOutcome("13")
        if refund == 0:
            return IsoOutcome("00")
        cash = self.conn.execute("SELECT * FROM transfers WHERE id = ?", (cash_id,)).fetchone()
        refund_id = self.ledger.transfer(
            cash["credit_account"],
            row["account_id"],
            refund,
            kind="reversal",
            terminal_id=cash["terminal_id"],
            reverses=cash_id,
        )
        self._link(row["id"], refund_id, "refund")
        fee_back = 0
        if dispensed == 0 and "fee" in links:
            fee_back = row["fee"]
            fee_refund = self.ledger.transfer(
                FEE_ACCOUNT,
                row["account_id"],
                fee_back,
                kind="reversal",
                terminal_id=cash["terminal_id"],
                reverses=links["fee"],
            )
            self._link(row["id"], fee_refund, "refund")
        self.conn.execute(
            "UPDATE reservations SET status = 'refunded', refunded = ?, closed_at = ? WHERE id = ?",
            (refund + fee_back, self.clock.now().isoformat(), row["id"]),
        )
        self.event(
            "refunded",
            person_id=row["person_id"],
            reservation_id=row["id"],
            terminal_id=request.get("41"),
            dispensed=dispensed,
            refunded=refund,
            fee_refunded=fee_back,
        )
        return IsoOutcome("00", transfer_id=refund_id)

    # -- checks -------------------------------------------------------------------------

    def _wire(self, request: Message) -> dict[str, str]:
        """Field 63 of a known terminal that may ask now: 58, 91 (throttled), 30."""
        terminal = request.get("41", "")
        if terminal not in self.key_store.terminals:
            raise Refusal("58", f"unknown terminal {terminal}")
        wait = self.terminal_failures.retry_after(terminal)
        if wait > 0:
            raise Refusal("91", f"too many failed cardless checks at {terminal}: {wait:.0f} s")
        try:
            return parse_field63(request.get("63", ""))
        except CodecError as exc:
            raise Refusal("30", str(exc)) from None

    def _active(self, phone: str, terminal: str) -> sqlite3.Row:
        """The phone's active reservation; expires it first if its time is up (54). A
        locked number is refused (57) before anything is looked up. A phone without one
        (14, 54) counts against the ATM: trying number after number is how codes are
        guessed there."""
        if self.guard.locked(phone):
            raise Refusal("57", "cardless is locked for this phone number")
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM reservations WHERE phone = ? AND status = 'active'", (phone,)
        ).fetchone()
        if row is not None and row["expires_at"] <= self.now():
            self.close(row, "expired", "reservation time ran out", terminal)
            self.terminal_failures.hit(terminal)
            raise Refusal("54", "the reservation expired")
        if row is not None:
            return row
        last = self.conn.execute(
            "SELECT status FROM reservations WHERE phone = ? ORDER BY expires_at DESC LIMIT 1",
            (phone,),
        ).fetchone()
        self.terminal_failures.hit(terminal)
        if last is not None and last["status"] == "expired":
            raise Refusal("54", "the phone's latest reservation expired")
        raise Refusal("14", "no active reservation for this phone")

    def _check_currency(self, request: Message, row: sqlite3.Row) -> None:
        if request.get("49") and request["49"] != row["currency"]:
            raise Refusal("13", f"currency {request['49']} but reserved in {row['currency']}")

    def _check_method(self, request: Message, wire: Mapping[str, str], row: sqlite3.Row) -> None:
        """Does the ATM's proof match the reservation's method? A failure counts."""
        terminal = request["41"]
        probe = None
        if "template" in wire:
            try:
                probe = load_template(wire["template"])
            except AtmError as exc:  # TemplateError: damaged, not a wrong face
                raise Refusal("30", f"face template unreadable: {exc}") from None
        method = row["method"]
        if wire["mode"] != method:
            self._fail(row, terminal, f"method {wire['mode']} but reserved for {method}")
        if method in ("code", "both"):
            if not (request.get("52") or request.get("110")):
                self._fail(row, terminal, "no code (PIN block) sent")
            try:
                good = self.key_store.verify_pin(
                    request, cardless_pan(row["phone"]), self.keys.pvk, row["code_offset"]
                )
            except KeyUnavailable as exc:
                raise Refusal("63", f"no PIN key: {exc}") from None
            if not good:
                self._fail(row, terminal, "wrong code")
        if method in ("face", "both"):
            if probe is None:
                self._fail(row, terminal, "face required, no template sent")
            enrolled = enrolled_template(self.conn, row["person_id"])
            if enrolled is None:
                self._fail(row, terminal, "no enrolled face to compare with")
            assert probe is not None and enrolled is not None
            if probe.distance(enrolled) > self.settings.face_tolerance:
                self._fail(row, terminal, "face does not match")
        self.guard.passed(row["phone"])

    def _fail(self, row: sqlite3.Row, terminal: str, reason: str) -> None:
        """Count a failed check: 55, or 75 (and cancel, voiding the hold) at the limit.
        It counts against the phone number and the ATM too (:mod:`.throttle`)."""
        self.guard.failed(row["phone"])
        self.terminal_failures.hit(terminal)
        attempts = row["attempts"] + 1
        self.conn.execute(
            "UPDATE reservations SET attempts = ? WHERE id = ?", (attempts, row["id"])
        )
        self.event(
            "atm_check_failed",
            person_id=row["person_id"],
            reservation_id=row["id"],
            terminal_id=terminal,
            reason=reason,
            attempts=attempts,
        )
        if attempts >= self.settings.attempts:
            self.close(row, "cancelled", f"{attempts} failed checks at ATMs", terminal)
            raise Refusal("75", f"{reason}: attempts exhausted, reservation cancelled")
        raise Refusal("55", reason)

    def _recently_verified(self, row: sqlite3.Row, terminal: str) -> bool:
        return bool(
            row["verified_terminal"] == terminal
            and row["verified_at"] is not None
            and self.now() - row["verified_at"] <= self.settings.verify_seconds
        )

    def _cash_account(self, terminal: str) -> str:
        found = self.conn.execute(
            "SELECT cash_account FROM terminals WHERE id = ?", (terminal,)
        ).fetchone()
        if found is None:
            raise Refusal("58", f"terminal {terminal} has no cash account")
        return str(found["cash_account"])
