"""The seed's joint-account parts: ``[joint]`` settings and ``[[joint_accounts]]``.

Clear passwords, codes, app tokens and identity numbers appear in a seed only as test
data; they are turned here into what the host keeps (IBM 3624 offsets, HMACs) and never
stored. The seed loader (:mod:`sim.host.seed`) calls these; this module does not import
it, so the two stay apart like the cardless package and the seed.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from typing import Any

from atm_common.crypto.pinblock import ibm3624_offset
from atm_common.errors import ConfigError
from sim.host.joint.schema import ensure_schema
from sim.host.settings import HostKeys, JointSettings, PointsRule

__all__ = ["joint_settings", "load_joint", "secret_hash", "valid_code"]


def valid_code(code: str) -> bool:
    """A password or personal code: 4 to 12 ASCII digits (what a PIN block can carry)."""
    return code.isascii() and code.isdigit() and 4 <= len(code) <= 12


def secret_hash(keys: HostKeys, purpose: str, value: str) -> str:
    """The HMAC kept instead of an app token or an identity number."""
    return hmac.new(keys.pan_key, f"joint-{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _int(source: str, table: dict[str, Any], key: str, default: int, prefix: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(source, f"{prefix}{key}", "must be a non-negative integer")
    return value


def joint_settings(source: str, root: dict[str, Any]) -> JointSettings:
    """The top-level ``[joint]`` table (all keys optional)."""
    table = root.get("joint", {})
    if not isinstance(table, dict):
        raise ConfigError(source, "joint", "must be a table")
    points = []
    rules = table.get("points", {})
    if not isinstance(rules, dict):
        raise ConfigError(source, "joint.points", "must be a table")
    for account_type, rule in rules.items():
        if not isinstance(rule, dict):
            raise ConfigError(source, f"joint.points.{account_type}", "must be a table")
        prefix = f"joint.points.{account_type}."
        rule_out = PointsRule(
            base=_int(source, rule, "base", 0, prefix),
            points=_int(source, rule, "points", 1, prefix),
            per=max(1, _int(source, rule, "per", 100, prefix)),
        )
        points.append((str(account_type), rule_out))
    settings = JointSettings(
        failures_allowed=_int(source, table, "failures_allowed", 2, "joint."),
        approval_seconds=_int(source, table, "approval_seconds", 120, "joint."),
        bind_minutes=_int(source, table, "bind_minutes", 60, "joint."),
        points=tuple(points),
    )
    if settings.approval_seconds == 0 or settings.bind_minutes == 0:
        raise ConfigError(source, "joint", "approval_seconds and bind_minutes must be positive")
    return settings


def _code(source: str, row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not valid_code(value):
        raise ConfigError(source, f"{where}.{key}", "must be 4 to 12 digits, as a string")
    return value


def load_joint(
    conn: sqlite3.Connection, source: str, root: dict[str, Any], keys: HostKeys, now: str
) -> None:
    """Create the tables and load ``[[joint_people]]`` and ``[[joint_accounts]]`` (inside
    the seed loader's transaction: the persons and accounts exist already)."""
    ensure_schema(conn)
    for i, p in enumerate(root.get("joint_people", [])):
        where = f"joint_people[{i}]"
        person, token, identity = p.get("person"), p.get("token"), p.get("identity")
        if not all(isinstance(v, str) and v for v in (person, token, identity)):
            raise ConfigError(source, where, "needs person, token and identity (strings)")
        conn.execute(
            "INSERT INTO joint_people VALUES (?,?,?)",
            (person, secret_hash(keys, "token", token), secret_hash(keys, "identity", identity)),
        )
    for i, a in enumerate(root.get("joint_accounts", [])):
        where = f"joint_accounts[{i}]"
        number = a.get("number")
        if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (number,)).fetchone() is None:
            raise ConfigError(source, f"{where}.number", f"{number!r} is no account of the seed")
        password = _code(source, a, "password", where)
        conn.execute(
            "INSERT INTO joint_accounts (account_id, account_type, password_offset) VALUES (?,?,?)",
            (number, str(a.get("type", "joint")), ibm3624_offset(password, number, keys.pvk)),
        )
        conn.execute("INSERT INTO joint_points VALUES (?, 0)", (number,))
        owners = a.get("owners", [])
        if not isinstance(owners, list) or len(owners) < 2:
            raise ConfigError(source, f"{where}.owners", "a joint account has two or more")
        offsets: set[str] = set()
        for j, o in enumerate(owners):
            person = o.get("person") if isinstance(o, dict) else None
            known = conn.execute(
                "SELECT 1 FROM joint_people WHERE person_id = ?", (person,)
            ).fetchone()
            if known is None:
                raise ConfigError(source, f"{where}.owners[{j}]", f"{person!r} has no joint_people")
            code = _code(source, o, "code", f"{where}.owners[{j}]")
            offset = ibm3624_offset(code, number, keys.pvk)
            if offset in offsets:  # the code's match must name one co-owner
                raise ConfigError(source, f"{where}.owners[{j}].code", "is another's code")
            offsets.add(offset)
            conn.execute(
                "INSERT INTO joint_owners VALUES (?,?,?,?)",
                (number, person, offset, now),
            )
            conn.execute(
                "INSERT INTO ownership VALUES (?, ?) ON CONFLICT DO NOTHING", (person, number)
            )
