"""Private field 124: a corporate card's role, department and what they open.

A corporate card belongs to an enterprise user who acts in one of the roles they hold
in one of their departments (docs/enterprise.md). The terminal and the host carry that
in field 124 (ASCII, ``;``-separated ``key=value``); the fund account an operation is
on travels in field 102 (account identification 1).

- host -> terminal, answering the PIN's 0100 without a claim: ``ROLES=role@dept,...``,
  the pairs the card's user holds;
- terminal -> host, every later 0100/0200 of the session: ``ROLE=..;DEPT=..``;
- host -> terminal, answering a claim: ``OPS=op,...;ACC=account,...``, what the table
  opens to that role there (operations and fund accounts).
"""

from __future__ import annotations

import dataclasses

from host_link.errors import CodecError

FIELD = "124"
ACCOUNT_FIELD = "102"


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CodecError(f"field {FIELD}: {part!r} is not key=value")
        out[key] = value
    return out


def _items(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


@dataclasses.dataclass(frozen=True)
class Claim:
    """The role and department a session acts in."""

    role: str
    department: str

    def field(self) -> str:
        return f"ROLE={self.role};DEPT={self.department}"

    @property
    def label(self) -> str:
        return f"{self.role}@{self.department}"


def parse_claim(text: str) -> Claim:
    pairs = _pairs(text)
    role, department = pairs.get("ROLE", ""), pairs.get("DEPT", "")
    if not role or not department:
        raise CodecError(f"field {FIELD}: a claim needs ROLE and DEPT")
    return Claim(role, department)


def roles_field(claims: list[Claim]) -> str:
    return "ROLES=" + ",".join(c.label for c in claims)


def grant_field(operations: list[str], accounts: list[str]) -> str:
    return f"OPS={','.join(operations)};ACC={','.join(accounts)}"


@dataclasses.dataclass(frozen=True)
class Offer:
    """What the host answered: the pairs held, or what one claim opens."""

    roles: tuple[Claim, ...] = ()
    operations: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()


def parse_offer(text: str) -> Offer:
    pairs = _pairs(text)
    roles = []
    for label in _items(pairs.get("ROLES", "")):
        role, sep, department = label.partition("@")
        if not sep:
            raise CodecError(f"field {FIELD}: {label!r} is not role@department")
        roles.append(Claim(role, department))
    return Offer(
        tuple(roles), tuple(_items(pairs.get("OPS", ""))), tuple(_items(pairs.get("ACC", "")))
    )
