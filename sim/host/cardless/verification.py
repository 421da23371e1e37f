"""The first steps of a phone session: open it, prove the phone, prove the person.

Each step is one SQLite transaction with its journal event and any SMS: request (the
bank texts a code to the customer's registered phone) -> verify the code -> consent and
a face capture, compared with the template enrolled at the bank. The request id is the
session's handle: unguessable, and the only thing the phone holds (there is no login in
this simulator). A wrong SMS code or a face mismatch counts, and ``phone_attempts`` of
either close the session; any other refusal changes nothing.

:class:`PhoneVerification` also keeps the session's state (``cardless_requests``) for
the later steps, which :class:`sim.host.cardless.phone.PhoneBank` adds on top of it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from host_link.cardless import phone_digits
from sim.host.cardless import sms
from sim.host.cardless.errors import Conflict, Forbidden, Gone, NotFound, Unprocessable
from sim.host.cardless.faces import FaceResult, enrolled_template
from sim.host.cardless.reservations import ReservationBook
from sim.host.ledger import transaction

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate


def utc_iso(epoch: float) -> str:
    """Epoch seconds (how the tables keep expiry times) as ISO 8601 in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


class PhoneVerification:
    """Opening phone sessions and proving phone and person, on the host's connection
    (not thread-safe, like :class:`~sim.host.cardless.phone.PhoneBank`)."""

    def __init__(self, desk: ReservationBook, on_sms: Callable[[], None] | None = None) -> None:
        self.desk = desk
        self.conn: sqlite3.Connection = desk.conn
        self.clock = desk.clock
        self.settings = desk.settings
        self.on_sms = on_sms  # wakes the outbox worker after a commit

    # -- helpers ------------------------------------------------------------------------

    def _sms(self, digits: str, text: str, purpose: str) -> None:
        sms.send(self.conn, self.clock, digits, text, purpose)

    def _sent(self) -> None:
        if self.on_sms is not None:
            self.on_sms()

    def _code_hash(self, request_id: str, code: str) -> str:
        return sms.code_hash(self.desk.keys.pan_key, request_id, code)

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
            text = sms.verification_text(code, self.settings.request_minutes)
            self._sms(digits, text, "verification")
            self.desk.event("requested", person_id=person["id"], request_id=request_id)
        self._sent()
        return {"request_id": request_id, "status": "sent", "expires_at": utc_iso(expires)}

    def messages(self, phone: str) -> list[dict[str, Any]]:
        """The phone's SMS inbox: what the outbox holds for it (the simulated network)."""
        return sms.inbox(self.conn, self.digits(phone))

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
            "expires_at": utc_iso(row["expires_at"]),
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
        enrolled = enrolled_template(self.conn, row["person_id"])
        if enrolled is None:
            raise Conflict("no face is enrolled for this customer: enrol at a branch first")
        return enrolled

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
