"""Supervisor mode's leaf of the exception tree."""

from __future__ import annotations

from atm_common.errors import AtmError


class SupervisorError(AtmError):
    """A supervisor request refused: wrong role, in a session, counts that make no sense."""


class SupervisorCardRefused(SupervisorError):
    """The host refused a supervisor card entry (or did not answer): ``code`` is its
    response code ("host" when there was no answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ExchangeInDoubt(SupervisorError):
    """The 0800/182 got no answer after every resend: the exchange may be booked at the
    host; the counters are not loaded and the next exchange start asks again."""
