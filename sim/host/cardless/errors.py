"""The phone steps' refusals: the cardless leaves of the exception tree.

Each carries the HTTP status the phone API (:mod:`sim.host.api`) answers with, so the
business logic in :mod:`.phone`, :mod:`.fees` and :mod:`.faces` raises them without
knowing about HTTP. A refused step changes nothing, except that a wrong SMS code or a
face mismatch counts (see :class:`sim.host.cardless.phone.PhoneBank`). The ATM's side
refuses with ISO 8583 response codes instead (:mod:`.iso`).
"""

from __future__ import annotations

from atm_common.errors import AtmError


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


class Locked(PhoneError):
    """Too many consecutive failed checks for this phone number: cardless withdrawal is
    locked for it until the bank clears it (see :mod:`.throttle`)."""

    status = 423


class TooManyRequests(PhoneError):
    """A throttle: try again after ``retry_after`` seconds (the HTTP Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
