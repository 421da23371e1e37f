"""Sessions of enterprise users and bank administrators: opaque random tokens, stored
only as digests, expiring. Shared by :mod:`.bank` and :mod:`.admin`."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from atm_common.clock import Clock
from sim.host.enterprise.credentials import new_token, token_hash
from sim.host.enterprise.errors import Unauthorised
from sim.host.enterprise.policy import domain

DEFAULT_MINUTES = 15.0


@dataclasses.dataclass(frozen=True)
class Session:
    kind: str  # user or admin
    subject: str
    company: str = ""
    role: str = ""
    department: str = ""

    @property
    def dom(self) -> str:
        return domain(self.company, self.department)


class SessionStore:
    def __init__(self, conn: sqlite3.Connection, clock: Clock, minutes: float) -> None:
        self.conn, self.clock, self.minutes = conn, clock, minutes

    def open(self, session: Session) -> dict[str, Any]:
        """A new token for ``session`` (inside the caller's transaction); the token is in
        the answer and nowhere else."""
        token = new_token()
        now = self.clock.now()
        expires = now.timestamp() + self.minutes * 60
        self.conn.execute(
            "DELETE FROM ent_sessions WHERE expires_at < ?", (now.timestamp() - 3600,)
        )
        self.conn.execute(
            "INSERT INTO ent_sessions VALUES (?,?,?,?,?,?,?,?)",
            (
                token_hash(token),
                session.kind,
                session.subject,
                session.company,
                session.role,
                session.department,
                now.isoformat(),
                expires,
            ),
        )
        return {"token": token, "expires_in": int(self.minutes * 60)}

    def find(self, token: str, kind: str) -> Session:
        """The live session of ``token``, or :class:`Unauthorised` (unknown, of the other
        kind, or expired; expired rows are pruned at later logins)."""
        row = self.conn.execute(
            "SELECT * FROM ent_sessions WHERE token_hash = ?", (token_hash(token or "-"),)
        ).fetchone()
        if row is None or row["kind"] != kind:
            raise Unauthorised("no valid session: log in")
        if row["expires_at"] <= self.clock.now().timestamp():
            raise Unauthorised("the session has expired: log in again")
        return Session(kind, row["subject"], row["company_id"], row["role"], row["department"])

    def close(self, token: str) -> None:
        self.conn.execute("DELETE FROM ent_sessions WHERE token_hash = ?", (token_hash(token),))
