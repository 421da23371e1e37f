"""The bank host's leaves of the exception tree (root: :mod:`atm_common.errors`)."""

from __future__ import annotations

from atm_common.errors import AtmError


class LedgerError(AtmError):
    """The host ledger refused a posting (unbalanced, unknown account, ...)."""
