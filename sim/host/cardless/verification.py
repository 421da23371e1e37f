"""The first steps of a phone session: open it, prove the phone, prove the person.

Each step is one SQLite transaction with its journal event and any SMS: request (the
bank texts a code to the customer's registered phone) -> verify the code -> consent and
a face capture, compared with the template enrolled at the bank. The request id is the
session's handle: unguessable, and the only thing the phone holds (there is no login in
this simulator). A wrong SMS code or a face mismatch counts, and ``phone_attempts`` of
either close the session; any other refusal changes nothing.

:class:`PhoneVerification` also keeps the session's state (``cardless_requests``) for
the later steps, which :class:`sim.host.cardless.phone.PhoneBank` adds on top of it.

Nothing here tells a caller whether a phone number belongs to a customer: a request for
an unknown number (or one several customers share) gets the same answer, a decoy session
(``cardless_decoys``) whose code nobody has, and the same refusals after that. New
sessions and failed checks are throttled, and a run of failures locks the number
(:mod:`.throttle`): otherwise three tries per session would mean nothing.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from atm_common.masking import mask_phone
from host_link.cardless import phone_digits
from sim.host.cardless import sms
from sim.host.cardless.errors import Conflict, Forbidden, Gone, Locked, NotFound, Unprocessable
from sim.host.cardless.faces import FaceResult, enrolled_template
from sim.host.cardless.reservations import ReservationBook
from sim.host.cardless.throttle import Limiter, ThrottlePolicy
from sim.host.ledger import transaction

log = logging.getLogger(__name__)

LOCKED = (
    "too many failed checks for this phone number: cardless withdrawal is locked,"
    " please contact your bank"
)
# A decoy session, read with the columns of a real one; its code_hash matches no code.
_DECOY = (
    "SELECT id, NULL AS person_id, phone, '' AS code_hash, code_attempts, 0 AS face_attempts,"
    " status, NULL AS consent_at, NULL AS reservation_id, created_at, expires_at"
    " FROM cardless_decoys WHERE id = ?"
)

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate


def utc_iso(epoch: float) -> str:
    """Epoch seconds (how the tables keep expiry times) as ISO 8601 in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


class PhoneVerification:
    """Opening phone sessions and proving phone and person, on the host's connection
    (not thread-safe, like :class:`~sim.host.cardless.phone.PhoneBank`)."""

    def __init__(
        self,
        desk: ReservationBook,
        on_sms: Callable[[], None] | None = None,
        policy: ThrottlePolicy | None = None,
    ) -> None:
        self.desk = desk
        self.conn: sqlite3.Connection = desk.conn
        self.clock = desk.clock
        self.settings = desk.settings
        self.on_sms = on_sms  # wakes the outbox worker after a commit
        self.guard = desk.guard
        policy = policy or ThrottlePolicy()
        self.sessions_per_phone = Limiter(
            policy.sessions_per_phone, self.clock, "new sessions for this phone"
        )
        self.sessions_per_address = Limiter(
            policy.sessions_per_address, self.clock, "new sessions from this address"
        )
        self.code_failures = Limiter(
            policy.code_failures_per_address, self.clock, "wrong codes from this address"
        )

    # -- helpers ------------------------------------------------------------------------

    def _sms(self, digits: str, text: str, purpose: str) -> None:
        sms.send(self.conn, self.clock, digits, text, purpose)

    def _sent(self) -> None:
        if self.on_sms is not None:
            self.on_sms()

    def _code_hash(self, request_id: str, code: str) -> str:
        return sms.code_hash(self.desk.keys.pan_key, request_id, code)

    def _find(self, request_id: str) -> sqlite3.Row | None:
        """A session, real or decoy (``person_id`` is None only for a decoy)."""
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM cardless_requests WHERE id = ?", (request_id,)
        ).fetchone()
        if row is None:
            row = self.conn.execute(_DECOY, (request_id,)).fetchone()
        return row

    def _request(self, request_id: str, *states: str) -> sqlite3.Row:
        """The live session in one of ``states``; 404 / 410 (expired) / 403 (failed) /
        409 (another step is due)."""
        row = self._find(request_id)
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

    def _people(self, digits: str) -> list[sqlite3.Row]:
        """The customers with this phone number (one, or a decoy session is due)."""
        return self.conn.execute(
            "SELECT id, name FROM persons WHERE phone IS NOT NULL"
            " AND replace(replace(replace(phone, '+', ''), ' ', ''), '-', '') = ?",
            (digits,),
        ).fetchall()

    def _throttle_session(self, digits: str, client: str | None) -> None:
        """429 while this phone or this address must wait; otherwise count the session.
        Unknown numbers count like known ones, so a 429 reveals nothing either."""
        if client is not None:
            self.sessions_per_address.check(client)
        self.sessions_per_phone.check(digits)
        if client is not None:
            self.sessions_per_address.hit(client)
        self.sessions_per_phone.hit(digits)

    @staticmethod
    def digits(phone: str) -> str:
        try:
            return phone_digits(phone)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None

    # -- 1. request and SMS -------------------------------------------------------------

    def request(self, phone: str, client: str | None = None) -> dict[str, Any]:
        """Open a session for the customer with this phone and text them a code.

        The answer is the same for any well-formed number: a number no customer has,
        or several share, gets a decoy session (the same work, one transaction, no SMS).
        Refused before anything else while the number is locked (423) or this phone or
        the ``client`` address must wait (429).
        """
        digits = self.digits(phone)
        if self.guard.locked(digits):
            raise Locked(LOCKED)
        self._throttle_session(digits, client)
        code = f"{self.desk.rng.randrange(1_000_000):06d}"
        with transaction(self.conn):
            people = self._people(digits)
            request_id = self.desk.token()
            code_hash = self._code_hash(request_id, code)
            expires = self.desk.now() + self.settings.request_minutes * 60
            created = self.clock.now().isoformat()
            if len(people) == 1:
                self.conn.execute(
                    "INSERT INTO cardless_requests (id, person_id, phone, code_hash, status,"
                    " created_at, expires_at) VALUES (?,?,?,?,'sent',?,?)",
                    (request_id, people[0]["id"], digits, code_hash, created, expires),
                )
                text = sms.verification_text(code, self.settings.request_minutes)
                self._sms(digits, text, "verification")
                self.desk.event("requested", person_id=people[0]["id"], request_id=request_id)
            else:
                self.conn.execute(
                    "INSERT INTO cardless_decoys (id, phone, status, created_at, expires_at)"
                    " VALUES (?,?,'sent',?,?)",
                    (request_id, digits, created, expires),
                )
                why = "several customers share it" if people else "no customer has it"
                self.desk.event("decoy", request_id=request_id, phone=mask_phone(digits), why=why)
                if people:
                    log.warning(
                        "phone %s is shared by %d customers", mask_phone(digits), len(people)
                    )
        if len(people) == 1:
            self._sent()
        return {"request_id": request_id, "status": "sent", "expires_at": utc_iso(expires)}

    def messages(self, phone: str) -> list[dict[str, Any]]:
        """The phone's SMS inbox: what the outbox holds for it (the simulated network)."""
        return sms.inbox(self.conn, self.digits(phone))

    def status(self, request_id: str) -> dict[str, Any]:
        row = self._find(request_id)
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

    def verify_code(self, request_id: str, code: str, client: str | None = None) -> dict[str, Any]:
        """Prove the phone; a wrong code counts (the failure commits, then 403): in the
        session, against the phone number (:class:`~.throttle.PhoneGuard`) and against
        the ``client`` address. While the address must wait (429) or the number is
        locked (423) the code is not even compared."""
        if client is not None:
            self.code_failures.check(client)
        with transaction(self.conn):
            row = self._request(request_id, "sent")
            digits = row["phone"]
            if self.guard.locked(digits):
                raise Locked(LOCKED)
            good = hmac.compare_digest(self._code_hash(request_id, code), row["code_hash"])
            attempts = row["code_attempts"] + (0 if good else 1)
            left = self.settings.phone_attempts - attempts
            status = "verified" if good else ("failed" if left <= 0 else "sent")
            table = "cardless_requests" if row["person_id"] is not None else "cardless_decoys"
            self.conn.execute(
                f"UPDATE {table} SET code_attempts = ?, status = ? WHERE id = ?",
                (attempts, status, request_id),
            )
            locked = False
            if good:
                self.guard.passed(digits)
            else:
                locked = self.guard.failed(digits)
            self.desk.event(
                "sms_verified" if good else "sms_failed",
                person_id=row["person_id"],
                request_id=request_id,
                attempts=attempts,
            )
        if good:
            return self.status(request_id)
        if client is not None:
            self.code_failures.hit(client)
        if locked:
            raise Locked(f"wrong code; {LOCKED}")
        if left <= 0:
            raise Forbidden("wrong code; too many attempts: this request is closed")
        raise Forbidden(f"wrong code; {left} attempt(s) left")

    def enrolled(self, request_id: str, consent: bool) -> FaceTemplate:
        """Check the step may run, before the (slow) face detection: consent given, SMS
        verified, a template enrolled. Changes nothing."""
        if not consent:
            raise Unprocessable("consent is required before the bank may use your photo")
        row = self._request(request_id, "verified")
        if self.guard.locked(row["phone"]):
            raise Locked(LOCKED)
        enrolled = enrolled_template(self.conn, row["person_id"])
        if enrolled is None:
            raise Conflict("no face is enrolled for this customer: enrol at a branch first")
        return enrolled

    def face_checked(self, request_id: str, probe: FaceTemplate) -> FaceResult:
        """Record a face comparison (after :meth:`enrolled` and the detection). The
        phone learns match or no match, never the distance: a distance would tell an
        impostor which photo came closer (it stays in the bank's own records)."""
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
            if match:
                self.guard.passed(row["phone"])
            else:
                self.guard.failed(row["phone"])
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
        return FaceResult(match, max(0, left), status)
