"""Supervisor mode's leaf of the exception tree."""

from __future__ import annotations

from atm_common.errors import AtmError


class SupervisorError(AtmError):
    """A supervisor request refused: wrong role, in a session, counts that make no sense."""
