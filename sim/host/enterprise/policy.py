"""The operation-permission table as a pycasbin "RBAC with domains" policy.

A domain is ``company:department``. ``g`` rows say which roles a user really holds in
which department; ``p`` rows say what a role in a department may do: one row per
(operation, fund account), so an entry of the table is the product of its operations
and its accounts. A request names the user *and* the role the session was opened in,
and the matcher needs both: the user still holds that role there, and the role there
may do that operation on that account. Both checked on every request, so a role taken
away or a table changed is in force at the next one.

Every host process keeps one enforcer and reloads it when the version counter in the
database differs from the one it loaded (one indexed read per check), so a change made
through any process is seen by all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import casbin

from sim.host.enterprise.adapter import HostDbAdapter

MODEL = """
[request_definition]
r = sub, role, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, r.role, r.dom) && r.sub != r.role && r.role == p.sub && r.dom == p.dom \
&& r.obj == p.obj && r.act == p.act
"""


def domain(company: str, department: str) -> str:
    return f"{company}:{department}"


class PolicyBook:
    """The enforcer over the host database, reloaded when the policy version moves."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.adapter = HostDbAdapter(conn)
        model = casbin.Enforcer.new_model(text=MODEL)
        self.enforcer = casbin.Enforcer(model, self.adapter)
        self.enforcer.enable_auto_save(False)  # the bank writes rows; the enforcer reads
        self.loaded = -1
        self.fresh()

    def version(self) -> int:
        row = self.conn.execute("SELECT version FROM ent_policy_version WHERE id = 1").fetchone()
        return int(row[0]) if row is not None else 0

    def fresh(self) -> casbin.Enforcer:
        """The enforcer, reloaded first if the policy changed since it was loaded."""
        version = self.version()
        if version != self.loaded:
            self.enforcer.load_policy()
            self.loaded = version
        return self.enforcer

    # -- questions ----------------------------------------------------------------------

    def allowed(self, user: str, role: str, dom: str, account: str, operation: str) -> bool:
        return bool(self.fresh().enforce(user, role, dom, account, operation))

    def holds(self, user: str, role: str, dom: str) -> bool:
        return bool(self.fresh().has_grouping_policy(user, role, dom))

    def held(self, user: str) -> list[tuple[str, str]]:
        """(role, domain) pairs the user holds, sorted."""
        rules = self.fresh().get_filtered_grouping_policy(0, user)
        return sorted((rule[1], rule[2]) for rule in rules)

    def entry(self, role: str, dom: str) -> tuple[list[str], list[str]]:
        """The table's entry for a role in a domain: (operations, accounts), sorted."""
        rules = self.fresh().get_filtered_policy(0, role, dom)
        return sorted({r[3] for r in rules}), sorted({r[2] for r in rules})

    def entries(self, company: str) -> list[tuple[str, str, list[str], list[str]]]:
        """(role, department, operations, accounts) of every entry of a company's table."""
        prefix = f"{company}:"
        keys = sorted(
            {(r[0], r[1]) for r in self.fresh().get_policy() if str(r[1]).startswith(prefix)}
        )
        return [(role, dom[len(prefix) :], *self.entry(role, dom)) for role, dom in keys]

    # -- writes (inside the caller's transaction) ---------------------------------------

    def set_entry(
        self, role: str, dom: str, operations: Iterable[str], accounts: Iterable[str]
    ) -> None:
        """Replace the entry of ``role`` in ``dom`` by operations x accounts."""
        self.adapter.remove_filtered_policy("p", "p", 0, role, dom)
        for account in sorted(set(accounts)):
            for operation in sorted(set(operations)):
                self.adapter.add_policy("p", "p", [role, dom, account, operation])
        self.bump()

    def grant_role(self, user: str, role: str, dom: str) -> None:
        self.adapter.add_policy("g", "g", [user, role, dom])
        self.bump()

    def bump(self) -> None:
        self.conn.execute(
            "INSERT INTO ent_policy_version (id, version) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE SET version = ent_policy_version.version + 1"
        )
