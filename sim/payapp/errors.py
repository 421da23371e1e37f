"""The payment server's refusals: each an HTTP status, one clear line, the field at fault."""

from __future__ import annotations

from sim.service_app import ServiceError


class PayError(ServiceError):
    """A refused request; nothing changed except a counted attempt."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(self.status_code, message, field)


class Invalid(PayError):
    status_code = 400


class Forbidden(PayError):
    status_code = 403


class NotFound(PayError):
    status_code = 404


class Conflict(PayError):
    status_code = 409


class Gone(PayError):
    status_code = 410
