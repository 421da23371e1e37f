"""A pycasbin Adapter over the host's own database connection (table ``ent_policy``).

pycasbin ships adapters for SQLAlchemy and others, each with its own connection; the
host has one connection (SQLite today, PostgreSQL next) and every write must join the
caller's transaction, so that a table change, its journal line and the policy version
commit together or not at all. This adapter is that: portable SQL, ``?`` placeholders,
no commit of its own. The enforcer never writes through it (see :mod:`.policy`): the
bank writes rows here and bumps the version; each enforcer reloads when it moves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from casbin import persist

FIELDS = 6  # v0 .. v5


class HostDbAdapter(persist.Adapter):  # type: ignore[misc]  # casbin is untyped
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def load_policy(self, model: Any) -> None:
        rows = self.conn.execute(
            "SELECT ptype, v0, v1, v2, v3, v4, v5 FROM ent_policy ORDER BY ptype, v0, v1, v2, v3"
        ).fetchall()
        for row in rows:
            values = [v for v in row[1:] if v != ""]
            persist.load_policy_line(", ".join([row[0], *values]), model)

    def save_policy(self, model: Any) -> bool:
        self.conn.execute("DELETE FROM ent_policy")
        for sec in ("p", "g"):
            for ptype, assertion in model.model.get(sec, {}).items():
                for rule in assertion.policy:
                    self.add_policy(sec, ptype, rule)
        return True

    def add_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> None:
        values = [*rule, *[""] * (FIELDS - len(rule))][:FIELDS]
        self.conn.execute(
            "INSERT INTO ent_policy (ptype, v0, v1, v2, v3, v4, v5) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            (ptype, *values),
        )

    def remove_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> None:
        values = [*rule, *[""] * (FIELDS - len(rule))][:FIELDS]
        self.conn.execute(
            "DELETE FROM ent_policy WHERE ptype = ? AND v0 = ? AND v1 = ? AND v2 = ?"
            " AND v3 = ? AND v4 = ? AND v5 = ?",
            (ptype, *values),
        )

    def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> None:
        clauses, params = ["ptype = ?"], [ptype]
        for offset, value in enumerate(field_values):
            if value:
                clauses.append(f"v{field_index + offset} = ?")
                params.append(value)
        self.conn.execute(f"DELETE FROM ent_policy WHERE {' AND '.join(clauses)}", params)
