"""The enterprise API's refusals, each with the HTTP status it is answered with.

The business logic (:mod:`.bank`, :mod:`.admin`) raises these without knowing HTTP; the
router (:mod:`.api`) turns them into ``{"detail": ...}`` answers. A refused request
changes nothing but its journal line. The ATM side answers ISO codes instead (:mod:`.iso`).
"""

from __future__ import annotations

from atm_common.errors import AtmError


class EnterpriseError(AtmError):
    """A refused enterprise request; ``status`` is its HTTP status."""

    status = 400


class Unauthorised(EnterpriseError):
    """No valid session: wrong credentials, a claim not held, a forged or expired token.
    One message for all of them, so a refusal tells the caller nothing."""

    status = 401


class Forbidden(EnterpriseError):
    """A valid session asking for what its role in its department may not do."""

    status = 403


class NotFound(EnterpriseError):
    status = 404


class Conflict(EnterpriseError):
    status = 409


class Unprocessable(EnterpriseError):
    status = 422
