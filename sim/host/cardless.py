"""Cardless cash withdrawal at the host: reservations, their holds, and the ATM's checks.

The flow (``docs/cardless.md``): the customer's phone asks for a withdrawal, proves the
phone by an SMS code and the person by a face check against the template enrolled at the
bank, picks an account, sees the fee, confirms. Confirming freezes amount + fee as a
*pending transfer* (a hold, never edited: posted or voided) and creates a reservation
that expires. At the ATM the customer gives the phone number and proves the reserved
method (a code typed as a PIN, a face, or both); the ATM asks (0100, processing code
319000) and then withdraws exactly the reserved amount (0200, 019000), which posts the
hold. Wrong answers count; the one that reaches the threshold cancels the reservation
and voids the hold.

Everything here runs on the caller's SQLite connection inside the caller's transaction
(the authoriser's, or the phone API's), so a reservation, its hold, its events and its
SMS commit or roll back together. What must never be stored is not: the reservation code
is kept only as its IBM 3624 offset (like a card PIN), the SMS code only as an HMAC.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import secrets
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from atm_common.clock import Clock
from atm_common.crypto.pinblock import ibm3624_offset
from atm_common.errors import AtmError, KeyUnavailable
from host_link.cardless import cardless_pan, parse_field63, phone_digits
from host_link.codec import Message
from host_link.errors import CodecError
from sim.host.ledger import Ledger, transaction

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate
    from sim.host.keys import KeyStore
    from sim.host.seed import HostKeys, HostSettings

__all__ = [
    "CardlessDesk",
    "CardlessSettings",
    "FeeRule",
    "IsoOutcome",
    "cardless_pan",
    "enrol_face",
    "ensure_schema",
]

log = logging.getLogger(__name__)

CLEARING_ACCOUNT = "GL-CARDLESS"  # holds credit this until the cash is out
FEE_ACCOUNT = "GL-FEES-CARDLESS"  # fee income
HOLD_KIND = "cardless"
STATUSES = ("active", "used", "cancelled", "expired", "refunded")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS face_templates (
        person_id TEXT PRIMARY KEY REFERENCES persons(id),
        template TEXT NOT NULL,             -- FaceTemplate.to_text(): never the photo
        source TEXT NOT NULL,               -- where it came from (file name), for people
        enrolled_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cardless_requests (
        id TEXT PRIMARY KEY,                -- unguessable: the phone session's handle
        person_id TEXT NOT NULL REFERENCES persons(id),
        phone TEXT NOT NULL,                -- digits only
        code_hash TEXT NOT NULL,            -- HMAC of the SMS code, never the code
        code_attempts INTEGER NOT NULL DEFAULT 0,
        face_attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN
            ('sent', 'verified', 'identified', 'reserved', 'failed')),
        consent_at TEXT,
        face_distance REAL,
        reservation_id TEXT,
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL            -- epoch seconds
    )""",
    """CREATE TABLE IF NOT EXISTS cardless_quotes (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES cardless_requests(id),
        account_id TEXT NOT NULL REFERENCES accounts(id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        fee INTEGER NOT NULL CHECK (fee >= 0),
        currency TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('code', 'face', 'both')),
        product TEXT NOT NULL,
        created_at TEXT NOT NULL,
        hold_minutes REAL                   -- the customer's collection window, if shorter
    )""",
    """CREATE TABLE IF NOT EXISTS reservations (
        id TEXT PRIMARY KEY,
        request_id TEXT REFERENCES cardless_requests(id),
        person_id TEXT NOT NULL REFERENCES persons(id),
        phone TEXT NOT NULL,                -- digits: how the ATM finds the reservation
        account_id TEXT NOT NULL REFERENCES accounts(id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        fee INTEGER NOT NULL CHECK (fee >= 0),
        currency TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('code', 'face', 'both')),
        code_offset TEXT,                   -- IBM 3624 offset of the code, never the code
        hold_transfer_id INTEGER NOT NULL REFERENCES transfers(id),
        status TEXT NOT NULL CHECK (status IN
            ('active', 'used', 'cancelled', 'expired', 'refunded')),
        attempts INTEGER NOT NULL DEFAULT 0,  -- failed checks at ATMs
        verified_terminal TEXT,             -- the last ATM whose 0100 passed the checks
        verified_at REAL,
        terminal_id TEXT,                   -- where the cash came out
        refunded INTEGER NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL,           -- epoch seconds
        created_at TEXT NOT NULL,
        closed_at TEXT
    )""",
    # One active reservation per phone: the ATM finds it by the phone number alone.
    "CREATE UNIQUE INDEX IF NOT EXISTS reservations_one_active"
    " ON reservations (phone) WHERE status = 'active'",
    "CREATE INDEX IF NOT EXISTS reservations_due ON reservations (status, expires_at)",
    """CREATE TABLE IF NOT EXISTS reservation_transfers (
        transfer_id INTEGER PRIMARY KEY REFERENCES transfers(id),
        reservation_id TEXT NOT NULL REFERENCES reservations(id),
        role TEXT NOT NULL CHECK (role IN ('hold', 'posting', 'cash', 'fee', 'refund'))
    )""",
    """CREATE TABLE IF NOT EXISTS cardless_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        person_id TEXT,
        request_id TEXT,
        reservation_id TEXT,
        terminal_id TEXT,
        detail TEXT NOT NULL                -- JSON; never a code, template or photo
    )""",
    "CREATE INDEX IF NOT EXISTS cardless_events_reservation"
    " ON cardless_events (reservation_id, id)",
    # ATM routing counts each terminal's recent sessions.
    "CREATE INDEX IF NOT EXISTS requests_terminal_time ON requests (terminal_id, received_at)",
)


_SCHEMA_NAMES = tuple(statement.split(" IF NOT EXISTS ")[1].split()[0] for statement in SCHEMA)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, in one transaction (every autocommit statement would be
    a durable commit of its own), inside the caller's when there is one: statement by
    statement, since executescript would COMMIT it (the seed loader calls this in one)."""
    marks = ",".join("?" * len(_SCHEMA_NAMES))
    (found,) = conn.execute(
        f"SELECT COUNT(*) FROM sqlite_master WHERE name IN ({marks})", _SCHEMA_NAMES
    ).fetchone()
    if found == len(_SCHEMA_NAMES):
        return
    if conn.in_transaction:
        for statement in SCHEMA:
            conn.execute(statement)
        return
    with transaction(conn):
        for statement in SCHEMA:
            conn.execute(statement)


# -- settings --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeeRule:
    """A fee: ``flat`` minor units plus ``bps`` basis points (1/100 %) of the amount,
    rounded half up, then kept within ``minimum`` .. ``maximum``. Integers only."""

    flat: int = 0
    bps: int = 0
    minimum: int = 0
    maximum: int | None = None

    def fee(self, amount: int) -> int:
        fee = self.flat + (amount * self.bps + 5_000) // 10_000
        fee = max(fee, self.minimum)
        return fee if self.maximum is None else min(fee, self.maximum)

    def describe(self) -> str:
        parts = [f"{self.flat} flat"] if self.flat or not self.bps else []
        if self.bps:
            parts.append(f"{self.bps} bps")
        if self.minimum:
            parts.append(f"min {self.minimum}")
        if self.maximum is not None:
            parts.append(f"max {self.maximum}")
        return " + ".join(parts)


@dataclasses.dataclass(frozen=True)
class CardlessSettings:
    """The seed's ``[cardless]`` table (see docs/cardless.md for each key)."""

    hold_minutes: int = 60  # a reservation (and its hold) lives this long
    attempts: int = 3  # failed ATM checks that cancel a reservation
    request_minutes: int = 10  # a phone session (SMS code, face, quote, confirm)
    phone_attempts: int = 3  # wrong SMS codes, and face mismatches, per phone session
    face_tolerance: float = 0.5
    min_amount: int = 1_000
    max_amount: int = 100_000
    multiple: int = 1_000  # amounts the ATMs' notes can make
    verify_seconds: int = 300  # a 0200 without credentials needs a passed 0100 this recent
    fees: tuple[tuple[str, FeeRule], ...] = ()  # card product -> rule; "default" for others

    def fee_rule(self, product: str) -> FeeRule | None:
        """The rule for ``product``; no fee table at all means free, a table without the
        product (and without ``default``) means no rule: the quote is refused."""
        if not self.fees:
            return FeeRule()
        table = dict(self.fees)
        return table.get(product) or table.get("default")


# -- shared helpers --------------------------------------------------------------------


def enrol_face(
    conn: sqlite3.Connection, person_id: str, template_text: str, source: str, at: str
) -> None:
    """Store (or replace) a person's enrolled face template."""
    conn.execute(
        "INSERT OR REPLACE INTO face_templates VALUES (?,?,?,?)",
        (person_id, template_text, source, at),
    )


def record_event(
    conn: sqlite3.Connection,
    clock: Clock,
    kind: str,
    *,
    person_id: str | None = None,
    request_id: str | None = None,
    reservation_id: str | None = None,
    terminal_id: str | None = None,
    **detail: Any,
) -> None:
    """One line of the bank-side journal of a cardless withdrawal (inside the caller's
    transaction, so a step and its record commit together)."""
    conn.execute(
        "INSERT INTO cardless_events (at, kind, person_id, request_id, reservation_id,"
        " terminal_id, detail) VALUES (?,?,?,?,?,?,?)",
        (
            clock.now().isoformat(),
            kind,
            person_id,
            request_id,
            reservation_id,
            terminal_id,
            json.dumps(detail, sort_keys=True),
        ),
    )
    log.info("cardless %s: %s %s", kind, reservation_id or request_id or person_id, detail)


def ensure_accounts(conn: sqlite3.Connection, currency: str) -> None:
    """The clearing and fee-income accounts (credit-normal, like every liability and
    income); created on first use so databases seeded before cardless existed work too."""
    for account in (CLEARING_ACCOUNT, FEE_ACCOUNT):
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id, kind, normal, currency) VALUES (?,?,?,?)",
            (account, "gl", "credit", currency),
        )


def load_template(text: str) -> FaceTemplate:
    """Import the face module only when a face is involved: hosts without numpy run."""
    from atm_common.face.verify import FaceTemplate

    return FaceTemplate.from_text(text)


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


class CardlessDesk:
    """Reservations and the ATM side of cardless withdrawal, on the host's connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        key_store: KeyStore,
        settings: HostSettings,
        clock: Clock,
        ledger: Ledger,
        rng: random.Random | None = None,
    ) -> None:
        self.conn, self.keys, self.key_store = conn, keys, key_store
        self.host_settings, self.settings = settings, settings.cardless
        self.clock, self.ledger = clock, ledger
        self.rng = rng or secrets.SystemRandom()
        ensure_schema(conn)

    def event(self, kind: str, **context: Any) -> None:
        record_event(self.conn, self.clock, kind, **context)

    def now(self) -> float:
        return self.clock.now().timestamp()

    def token(self) -> str:
        """An unguessable id (80 bits) from the injected random source."""
        return f"{self.rng.getrandbits(80):020x}"

    # -- reservation lifecycle (inside the caller's transaction) ----------------------

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

    # -- ISO 8583: the ATM's requests ---------------------------------------------------

    def handle_inquiry(self, request: Message) -> IsoOutcome:
        """0100 / 319000: find the phone's reservation and check the method. Approved
        with field 4 = the reserved amount, which the 0200 must then ask for."""
        try:
            wire = self._wire(request)
            row = self._active(wire["phone"], request["41"])
            self._check_currency(request, row)
            self._check_method(request, wire, row)
        except Refusal as refusal:
            log.info("cardless inquiry declined %s", refusal)
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
            amount_text = request.get("4", "")
            if not _digits(amount_text) or int(amount_text) != row["amount"]:
                raise Refusal("13", f"0200 for {amount_text or 'no amount'}, reserved otherwise")
            self._check_currency(request, row)
            if request.get("52") or request.get("110") or "template" in wire:
                self._check_method(request, wire, row)
            elif not self._recently_verified(row, terminal):
                self._fail(row, terminal, "0200 without credentials and no recent 0100")
            cash_account = self._cash_account(terminal)
        except Refusal as refusal:
            log.info("cardless withdrawal declined %s", refusal)
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
        terminal = request.get("41", "")
        if terminal not in self.key_store.terminals:
            raise Refusal("58", f"unknown terminal {terminal}")
        try:
            return parse_field63(request.get("63", ""))
        except CodecError as exc:
            raise Refusal("30", str(exc)) from None

    def _active(self, phone: str, terminal: str) -> sqlite3.Row:
        """The phone's active reservation; expires it first if its time is up (54)."""
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM reservations WHERE phone = ? AND status = 'active'", (phone,)
        ).fetchone()
        if row is not None and row["expires_at"] <= self.now():
            self.close(row, "expired", "reservation time ran out", terminal)
            raise Refusal("54", f"reservation {row['id']} expired")
        if row is not None:
            return row
        last = self.conn.execute(
            "SELECT status FROM reservations WHERE phone = ? ORDER BY expires_at DESC LIMIT 1",
            (phone,),
        ).fetchone()
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
            enrolled = self.conn.execute(
                "SELECT template FROM face_templates WHERE person_id = ?", (row["person_id"],)
            ).fetchone()
            if enrolled is None:
                self._fail(row, terminal, "no enrolled face to compare with")
            assert probe is not None and enrolled is not None
            distance = probe.distance(load_template(enrolled["template"]))
            if distance > self.settings.face_tolerance:
                self._fail(row, terminal, f"face does not match (distance {distance:.3f})")

    def _fail(self, row: sqlite3.Row, terminal: str, reason: str) -> None:
        """Count a failed check: 55, or 75 (and cancel, voiding the hold) at the limit."""
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
