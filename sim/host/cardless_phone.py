"""The phone's side of a cardless withdrawal at the bank: one session per request.

Steps, each one SQLite transaction (with its journal event and any SMS):
request (an SMS code goes out) -> verify the code -> consent + face capture, checked
against the enrolled template -> accounts -> quote (fee by the account's card product)
-> confirm (hold + reservation; the code, for code methods, is returned once and sent by
SMS) -> status / cancel. The request id is the session's handle: unguessable, and the
only thing the phone holds (there is no login in this simulator).

Errors are :class:`PhoneError` subclasses carrying the HTTP status the API answers with;
a refused step changes nothing, except that a wrong SMS code or a face mismatch counts
(and ``phone_attempts`` of them close the session).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from atm_common.errors import AtmError
from atm_common.masking import mask_phone
from host_link.cardless import MODES, phone_digits
from sim.host import outbox
from sim.host.cardless import CardlessDesk, load_template
from sim.host.ledger import balance_of, transaction

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 8 * 1024 * 1024


class PhoneError(AtmError):
    """A refused phone step; ``status`` is the HTTP status it maps to."""

    status = 400


class NotFound(PhoneError):
    status = 404


class Forbidden(PhoneError):
    status = 403


class Conflict(PhoneError):
    status = 409


class Gone(PhoneError):
    status = 410


class Unprocessable(PhoneError):
    status = 422


class Unavailable(PhoneError):
    status = 503


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def probe_template(image_b64: str, tolerance: float) -> FaceTemplate:
    """The template of the one face in a base64 JPEG/PNG (CPU-heavy: run it off the
    event loop). Anything unusable is :class:`Unprocessable`; no engine, 503."""
    try:
        data = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("image_base64 is not valid base64") from None
    if not data:
        raise Unprocessable("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise Unprocessable(f"the image is over {MAX_IMAGE_BYTES} bytes")
    try:
        import numpy as np

        from atm_common.face.verify import (
            FaceEngineUnavailable,
            FaceError,
            FaceVerifier,
            NoFace,
            SeveralFaces,
            require_module,
        )
    except ImportError as exc:
        raise Unavailable(f"face verification is not installed here: {exc}") from None
    try:
        cv2 = require_module("cv2")
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise Unprocessable("not a readable image (corrupt or not JPEG/PNG)")
        return FaceVerifier(tolerance).template(np.asarray(image, dtype=np.uint8))
    except FaceEngineUnavailable as exc:
        raise Unavailable(str(exc)) from None
    except NoFace:
        raise Unprocessable("no face found in the image: look straight at the camera") from None
    except SeveralFaces as exc:
        raise Unprocessable(f"{exc.faces} faces in the image: exactly one is needed") from None
    except FaceError as exc:
        raise Unprocessable(f"unusable image: {exc}") from None


@dataclasses.dataclass(frozen=True)
class FaceResult:
    match: bool
    distance: float
    tolerance: float
    attempts_left: int
    status: str


class PhoneBank:
    """The bank's phone-facing cardless service, on the host's connection.

    Not thread-safe: call it from the host's event loop (the API's handlers are async
    and do only the face detection in a worker thread, never the database work).
    """

    def __init__(self, desk: CardlessDesk, on_sms: Callable[[], None] | None = None) -> None:
        self.desk = desk
        self.conn: sqlite3.Connection = desk.conn
        self.clock = desk.clock
        self.settings = desk.settings
        self.on_sms = on_sms  # wakes the outbox worker after a commit

    # -- helpers ------------------------------------------------------------------------

    def _sms(self, digits: str, text: str, purpose: str) -> None:
        outbox.enqueue(
            self.conn,
            "sms",
            {"to": f"+{digits}", "text": text, "purpose": purpose},
            f"+{digits}",
            clock=self.clock,
        )

    def _sent(self) -> None:
        if self.on_sms is not None:
            self.on_sms()

    def _code_hash(self, request_id: str, code: str) -> str:
        key = self.desk.keys.pan_key
        return hmac.new(key, f"sms:{request_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def _request(self, request_id: str, *states: str) -> sqlite3.Row:
        """The live session in one of ``states``; 404 / 410 (expired) / 403 (failed) /
        409 (another step is due)."""
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM cardless_requests WHERE id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such cardless request")
        if row["status"] == "failed":
            raise Forbidden("this request was closed after too many failed attempts")
        if row["status"] == "reserved" and "reserved" not in states:
            raise Conflict(f"already confirmed: reservation {row['reservation_id']}")
        if row["expires_at"] <= self.desk.now():
            raise Gone("this request expired: start a new one")
        if row["status"] not in states:
            raise Conflict(f"request is {row['status']}; this step needs {' or '.join(states)}")
        return row

    def _person(self, digits: str) -> sqlite3.Row:
        rows = self.conn.execute(
            "SELECT id, name FROM persons WHERE phone IS NOT NULL"
            " AND replace(replace(replace(phone, '+', ''), ' ', ''), '-', '') = ?",
            (digits,),
        ).fetchall()
        if not rows:
            raise NotFound("no customer has this phone number")
        if len(rows) > 1:
            raise Conflict("several customers share this phone number: ask the branch")
        row: sqlite3.Row = rows[0]
        return row

    @staticmethod
    def digits(phone: str) -> str:
        try:
            return phone_digits(phone)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None

    # -- 1. request and SMS -------------------------------------------------------------

    def request(self, phone: str) -> dict[str, Any]:
        """Open a session for the customer with this phone and text them a code."""
        digits = self.digits(phone)
        code = f"{self.desk.rng.randrange(1_000_000):06d}"
        with transaction(self.conn):
            person = self._person(digits)
            request_id = self.desk.token()
            expires = self.desk.now() + self.settings.request_minutes * 60
            self.conn.execute(
                "INSERT INTO cardless_requests (id, person_id, phone, code_hash, status,"
                " created_at, expires_at) VALUES (?,?,?,?,'sent',?,?)",
                (
                    request_id,
                    person["id"],
                    digits,
                    self._code_hash(request_id, code),
                    self.clock.now().isoformat(),
                    expires,
                ),
            )
            self._sms(
                digits,
                f"Your bank: {code} is your code for a cardless cash withdrawal. It is valid"
                f" {self.settings.request_minutes} minutes. Never share it with anyone.",
                "verification",
            )
            self.desk.event("requested", person_id=person["id"], request_id=request_id)
        self._sent()
        return {"request_id": request_id, "status": "sent", "expires_at": _iso(expires)}

    def messages(self, phone: str) -> list[dict[str, Any]]:
        """The phone's SMS inbox: what the outbox holds for it (the simulated network)."""
        digits = self.digits(phone)
        rows = self.conn.execute(
            "SELECT id, payload, status, created, delivered_at FROM outbox"
            " WHERE kind = 'sms' AND destination = ? ORDER BY id",
            (f"+{digits}",),
        ).fetchall()
        return [
            {
                "id": r["id"],
                "text": json.loads(r["payload"]).get("text", ""),
                "status": r["status"],
                "created": r["created"],
                "delivered_at": r["delivered_at"],
            }
            for r in rows
        ]

    def status(self, request_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT * FROM cardless_requests WHERE id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such cardless request")
        expired = row["status"] not in ("reserved", "failed") and (
            row["expires_at"] <= self.desk.now()
        )
        return {
            "request_id": row["id"],
            "status": "expired" if expired else row["status"],
            "expires_at": _iso(row["expires_at"]),
            "reservation_id": row["reservation_id"],
        }

    # -- 2. SMS code, consent and face ----------------------------------------------------

    def verify_code(self, request_id: str, code: str) -> dict[str, Any]:
        """Prove the phone; a wrong code counts (the failure commits, then 403)."""
        with transaction(self.conn):
            row = self._request(request_id, "sent")
            good = hmac.compare_digest(self._code_hash(request_id, code), row["code_hash"])
            attempts = row["code_attempts"] + (0 if good else 1)
            left = self.settings.phone_attempts - attempts
            status = "verified" if good else ("failed" if left <= 0 else "sent")
            self.conn.execute(
                "UPDATE cardless_requests SET code_attempts = ?, status = ? WHERE id = ?",
                (attempts, status, request_id),
            )
            self.desk.event(
                "sms_verified" if good else "sms_failed",
                person_id=row["person_id"],
                request_id=request_id,
                attempts=attempts,
            )
        if good:
            return self.status(request_id)
        if left <= 0:
            raise Forbidden("wrong code; too many attempts: this request is closed")
        raise Forbidden(f"wrong code; {left} attempt(s) left")

    def enrolled(self, request_id: str, consent: bool) -> FaceTemplate:
        """Check the step may run, before the (slow) face detection: consent given, SMS
        verified, a template enrolled. Changes nothing."""
        if not consent:
            raise Unprocessable("consent is required before the bank may use your photo")
        row = self._request(request_id, "verified")
        enrolled = self.conn.execute(
            "SELECT template FROM face_templates WHERE person_id = ?", (row["person_id"],)
        ).fetchone()
        if enrolled is None:
            raise Conflict("no face is enrolled for this customer: enrol at a branch first")
        return load_template(enrolled["template"])

    def face_checked(self, request_id: str, probe: FaceTemplate) -> FaceResult:
        """Record a face comparison (after :meth:`enrolled` and the detection)."""
        tolerance = self.settings.face_tolerance
        with transaction(self.conn):
            enrolled = self.enrolled(request_id, consent=True)
            row = self._request(request_id, "verified")
            distance = probe.distance(enrolled)
            match = distance <= tolerance
            attempts = row["face_attempts"] + (0 if match else 1)
            left = self.settings.phone_attempts - attempts
            status = "identified" if match else ("failed" if left <= 0 else "verified")
            now = self.clock.now().isoformat()
            self.conn.execute(
                "UPDATE cardless_requests SET face_attempts = ?, status = ?, face_distance = ?,"
                " consent_at = COALESCE(consent_at, ?) WHERE id = ?",
                (attempts, status, distance, now, request_id),
            )
            person = row["person_id"]
            if row["consent_at"] is None:
                self.desk.event("consent", person_id=person, request_id=request_id)
            self.desk.event(
                "face_match" if match else "face_mismatch",
                person_id=person,
                request_id=request_id,
                distance=round(distance, 4),
                tolerance=tolerance,
            )
        return FaceResult(match, distance, tolerance, max(0, left), status)

    # -- 3. accounts, quote, confirm ----------------------------------------------------

    def _accounts(self, person_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT a.*, ("
            "  SELECT c.product FROM cards c JOIN card_accounts ca ON ca.pan_ref = c.pan_ref"
            "  WHERE ca.account_id = a.id AND c.person_id = o.person_id"
            "  ORDER BY c.status = 'active' DESC, ca.is_default DESC, c.pan_masked LIMIT 1"
            " ) AS product, ("
            "  SELECT c.pan_masked FROM cards c JOIN card_accounts ca ON ca.pan_ref = c.pan_ref"
            "  WHERE ca.account_id = a.id AND c.person_id = o.person_id"
            "  ORDER BY c.status = 'active' DESC, ca.is_default DESC, c.pan_masked LIMIT 1"
            " ) AS card"
            " FROM accounts a JOIN ownership o ON o.account_id = a.id"
            " WHERE o.person_id = ? ORDER BY a.id",
            (person_id,),
        ).fetchall()
        out = []
        for r in rows:
            balance = balance_of(r)
            out.append(
                {
                    "account": r["id"],
                    "currency": r["currency"],
                    "ledger_balance": balance.ledger,
                    "available": balance.available,
                    "locked": bool(r["locked"]),
                    "card_product": r["product"] or "none",
                    "card": r["card"],
                }
            )
        return out

    def accounts(self, request_id: str) -> list[dict[str, Any]]:
        row = self._request(request_id, "identified")
        return self._accounts(row["person_id"])

    def _priced(self, row: sqlite3.Row, account: str, amount: int, method: str) -> dict[str, Any]:
        """Validate and price; raises without changing anything."""
        s = self.settings
        if method not in MODES:
            raise Unprocessable(f"method must be one of {', '.join(MODES)}")
        if not s.min_amount <= amount <= s.max_amount or amount % s.multiple:
            raise Unprocessable(
                f"amount must be {s.min_amount}..{s.max_amount} in steps of {s.multiple}"
                " (minor units)"
            )
        found = {a["account"]: a for a in self._accounts(row["person_id"])}
        if account not in found:
            raise NotFound("this customer has no such account")
        chosen = found[account]
        if chosen["locked"]:
            raise Conflict("the account is locked")
        if chosen["currency"] != self.desk.host_settings.currency:
            raise Conflict("cardless withdrawals are in the bank's own currency only")
        rule = s.fee_rule(chosen["card_product"])
        if rule is None:
            raise Conflict(f"no cardless fee is set for card product {chosen['card_product']}")
        fee = rule.fee(amount)
        if chosen["available"] < amount + fee:
            raise Conflict(
                f"insufficient funds: {amount + fee} needed, {chosen['available']} available"
            )
        return {
            "account": account,
            "amount": amount,
            "fee": fee,
            "total": amount + fee,
            "currency": chosen["currency"],
            "method": method,
            "card_product": chosen["card_product"],
            "fee_rule": rule.describe(),
        }

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
                request_id=request_id,
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
                (reservation["id"], request_id),
            )
            text = (
                f"Your bank: {quote['amount'] / 100:.2f} reserved for cardless withdrawal"
                f" (fee {quote['fee'] / 100:.2f}) until {_iso(reservation['expires_at'])[:16]}"
                " UTC."
            )
            if code is not None:
                text += f" Code {code}: type it at the ATM like a PIN. Never share it."
            self._sms(row["phone"], text, "reservation")
        self._sent()
        return self._view(reservation) | {"code": code}

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
            "expires_at": _iso(row["expires_at"]),
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
        """The bank-side journal of a reservation, from its request to its end."""
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
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]


class SimulatedSmsGateway:
    """The outbox's SMS deliverer: there is no real gateway, the phone reads its inbox
    from the host (GET /phones/{phone}/messages), so delivery is accepting it."""

    async def __call__(self, payload: dict[str, Any]) -> None:
        to = str(payload.get("to", ""))
        log.info("SMS to %s handed to the simulated network", mask_phone(to))
