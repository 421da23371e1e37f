"""Who may enter supervisor mode, when, and what each role may do there.

Why roles: the person refilling cash must not reload keys, and the engineer clearing a
jam must not touch the cash books. A role is granted by a supervisor key (config: the
SHA-256 of each role's key, never the key itself), or by the host for a supervisor card
and its PIN (:meth:`SupervisorMode.grant`), and checked for every function.
Entering is refused while a customer session is open: supervisor mode only ever starts
between customers. The host is told on entry and exit (0800/171, 0800/172) by the caller.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping

from terminal.supervisor.errors import SupervisorError

FUNCTIONS: Mapping[str, frozenset[str]] = {
    "replenisher": frozenset({"exchange", "balance_report", "print_journal", "load_paper"}),
    "technician": frozenset({"diagnostics", "clear_fault", "keys", "print_journal", "load_paper"}),
}


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclasses.dataclass
class SupervisorMode:
    """``keys``: role -> SHA-256 hex digest of that role's supervisor key (from config)."""

    keys: Mapping[str, str]
    role: str | None = None

    def __post_init__(self) -> None:
        for role in self.keys:
            if role not in FUNCTIONS:
                raise SupervisorError(
                    f"unknown supervisor role {role!r} (known: replenisher, technician)"
                )

    @property
    def active(self) -> bool:
        return self.role is not None

    def check_entry(self, *, in_session: bool) -> None:
        """May supervisor mode be entered now? Never in a customer session, nor twice."""
        if in_session:
            raise SupervisorError("supervisor mode is entered between customers only")
        if self.role is not None:
            raise SupervisorError(f"supervisor mode is already active ({self.role})")

    def grant(self, role: str, *, in_session: bool) -> str:
        """Enter ``role``, as the host answered for a supervisor card and its PIN."""
        self.check_entry(in_session=in_session)
        if role not in FUNCTIONS:
            raise SupervisorError(f"the host gave an unknown supervisor role {role!r}")
        self.role = role
        return role

    def enter(self, key: str, *, in_session: bool) -> str:
        """Check the key, return its role. Refused in a customer session or on a bad key."""
        self.check_entry(in_session=in_session)
        digest = key_digest(key)
        for role, expected in self.keys.items():
            if hmac.compare_digest(digest, expected):
                self.role = role
                return role
        raise SupervisorError("supervisor key not recognised")

    def require(self, function: str) -> None:
        if self.role is None:
            raise SupervisorError(f"{function}: not in supervisor mode")
        if function not in FUNCTIONS[self.role]:
            raise SupervisorError(f"{function}: not allowed to the {self.role} role")

    def leave(self) -> str:
        if self.role is None:
            raise SupervisorError("not in supervisor mode")
        role, self.role = self.role, None
        return role
