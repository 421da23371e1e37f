"""The seed's ``[enterprise]`` table: administrators, companies, their fund accounts,
users with the roles they hold, and each company's permission table.

Fund accounts and users are the seed's ordinary ``[[accounts]]`` and ``[[persons]]``
(so a corporate card is an ordinary ``[[cards]]`` of that person); this only binds them
to a company. Clear passwords are test and demo data, like the seed's PINs: only their
scrypt hashes are stored. Every problem names the file and the key.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from atm_common.errors import ConfigError
from sim.host.enterprise.credentials import hash_password
from sim.host.enterprise.policy import PolicyBook, domain
from sim.host.enterprise.schema import OPERATIONS, PAYOUT_ACCOUNT, ROLES, ensure_schema

_hashes: dict[str, str] = {}  # password -> hash, per process: seeding many test databases


def _hash(password: str) -> str:
    if password not in _hashes:
        _hashes[password] = hash_password(password)
    return _hashes[password]


def _list(source: str, where: str, value: Any, kind: type = dict) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ConfigError(source, where, f"must be a list of {kind.__name__}")
    return value


def _str(source: str, where: str, table: dict[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(source, f"{where}.{key}", "is required (a string)")
    return value


def load_enterprise(
    conn: sqlite3.Connection, source: str, table: dict[str, Any] | None, currency: str
) -> None:
    """Create the tables and fill them from the seed (inside the seed loader's
    transaction); without an ``[enterprise]`` table only the tables are made."""
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO accounts (id, kind, normal, currency) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
        (PAYOUT_ACCOUNT, "gl", "credit", currency),
    )
    if not table:
        return
    policy = PolicyBook(conn)
    for i, admin in enumerate(_list(source, "enterprise.admins", table.get("admins", []))):
        where = f"enterprise.admins[{i}]"
        conn.execute(
            "INSERT INTO ent_admins VALUES (?,?,?)",
            (
                _str(source, where, admin, "id"),
                admin.get("name", ""),
                _hash(_str(source, where, admin, "password")),
            ),
        )
    for i, company in enumerate(_list(source, "enterprise.companies", table.get("companies", []))):
        _company(conn, policy, source, f"enterprise.companies[{i}]", company)


def _company(
    conn: sqlite3.Connection, policy: PolicyBook, source: str, where: str, company: dict[str, Any]
) -> None:
    cid = _str(source, where, company, "id")
    conn.execute("INSERT INTO ent_companies VALUES (?,?)", (cid, company.get("name", cid)))
    bound: set[str] = set()
    for j, fund in enumerate(_list(source, f"{where}.accounts", company.get("accounts", []))):
        at = f"{where}.accounts[{j}]"
        number = _str(source, at, fund, "number")
        if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (number,)).fetchone() is None:
            raise ConfigError(source, f"{at}.number", f"{number!r} is not an [[accounts]] entry")
        conn.execute(
            "INSERT INTO ent_fund_accounts VALUES (?,?,?)", (number, cid, fund.get("label", ""))
        )
        bound.add(number)
    for j, user in enumerate(_list(source, f"{where}.users", company.get("users", []))):
        at = f"{where}.users[{j}]"
        person = _str(source, at, user, "person")
        if conn.execute("SELECT 1 FROM persons WHERE id = ?", (person,)).fetchone() is None:
            raise ConfigError(source, f"{at}.person", f"{person!r} is not a [[persons]] entry")
        if person in ROLES:
            raise ConfigError(source, f"{at}.person", "a user id cannot be a role name")
        conn.execute(
            "INSERT INTO ent_users VALUES (?,?,?)",
            (person, cid, _hash(_str(source, at, user, "password"))),
        )
        for k, held in enumerate(_list(source, f"{at}.roles", user.get("roles", []), str)):
            role, _, department = held.partition("@")
            if role not in ROLES or not department:
                raise ConfigError(
                    source, f"{at}.roles[{k}]", f"must be role@department, role one of {ROLES}"
                )
            policy.grant_role(person, role, domain(cid, department))
    for j, entry in enumerate(_list(source, f"{where}.table", company.get("table", []))):
        at = f"{where}.table[{j}]"
        role = _str(source, at, entry, "role")
        if role not in ROLES:
            raise ConfigError(source, f"{at}.role", f"must be one of {ROLES}")
        operations = _list(source, f"{at}.operations", entry.get("operations"), str)
        accounts = _list(source, f"{at}.accounts", entry.get("accounts"), str)
        for op in operations:
            if op not in OPERATIONS:
                raise ConfigError(source, f"{at}.operations", f"{op!r}: one of {OPERATIONS}")
        for account in accounts:
            if account not in bound:
                raise ConfigError(source, f"{at}.accounts", f"{account} is not bound to {cid}")
        department = _str(source, at, entry, "department")
        policy.set_entry(role, domain(cid, department), operations, accounts)
