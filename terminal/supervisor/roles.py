"""Who may enter supervisor mode, when, and what each role may do there.

Why roles: the person refilling cash must not reload keys, and the engineer clearing a
jam must not touch the cash books. A role is granted by a supervisor key (config: a
salted scrypt hash of each role's key, never the key itself: :mod:`atm_common.keyhash`,
made by ``atm supervisor-key``), or by the host for a supervisor card
and its PIN (:meth:`SupervisorMode.grant`), and checked for every function.
Entering is refused while a customer session is open: supervisor mode only ever starts
between customers. The host is told on entry and exit (0800/171, 0800/172) by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from atm_common.keyhash import KeyHashError, hash_key, parse_key_hash
from terminal.supervisor.errors import SupervisorError

FUNCTIONS: Mapping[str, frozenset[str]] = {
    "replenisher": frozenset({"exchange", "balance_report", "print_journal", "load_paper"}),
    "technician": frozenset({"diagnostics", "clear_fault", "keys", "print_journal", "load_paper"}),
}


def key_digest(key: str) -> str:
    """The stored form of a supervisor key (``scrypt$...``, a fresh salt every call): what
    ``[supervisor.keys]`` holds. The name is older than the salt; it is kept for callers."""
    return hash_key(key)


@dataclasses.dataclass
class SupervisorMode:
    """``keys``: role -> the stored hash of that role's supervisor key (from config,
    :func:`key_digest`); malformed ones are refused here too, not at the first key."""

    keys: Mapping[str, str]
    role: str | None = None

    def __post_init__(self) -> None:
        for role, stored in self.keys.items():
            if role not in FUNCTIONS:
                raise SupervisorError(
                    f"unknown supervisor role {role!r} (known: replenisher, technician)"
                )
            try:
                parse_key_hash(stored)
            except KeyHashError as exc:
                raise SupervisorError(f"supervisor key of {role}: {exc}") from None

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
        """Check the key, return its role. Refused in a customer session or on a bad key.

        The key is checked against every role's hash, even after a match, so the time
        taken does not say which role (or whether the first) matched; if two roles had
        the same key the first in config order wins."""
        self.check_entry(in_session=in_session)
        matched = [
            role for role, stored in self.keys.items() if parse_key_hash(stored).matches(key)
        ]
        if not matched:
            raise SupervisorError("supervisor key not recognised")
        self.role = matched[0]
        return self.role

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
