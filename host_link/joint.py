"""Field 61 of a joint-account request and of its ``09`` answer (docs/host-link.md).

``KEY=value`` pairs separated by ``;``, keys two capital letters, values without ``;``
or ``=``:

- request: ``CB`` the personal code's PIN block (hex, encrypted like field 52/110 under
  the same key; never clear), ``CK`` its DUKPT KSN when it has its own, ``AR`` the
  approval reference of a request in progress, ``OP=B`` a balance that needs approval;
- answer ``09``: ``AR`` the reference, ``EX`` the seconds the approval has left.

Both ends use these two functions, so the format has one definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["format_field61", "parse_field61"]

_KEY = re.compile(r"^[A-Z]{2}$")
_VALUE = re.compile(r"^[0-9A-Za-z]{0,64}$")


def format_field61(fields: Mapping[str, str]) -> str:
    for key, value in fields.items():
        if not _KEY.match(key) or not _VALUE.match(value):
            raise ValueError(f"field 61: bad pair {key!r}")
    return ";".join(f"{k}={v}" for k, v in fields.items())


def parse_field61(text: str) -> dict[str, str] | None:
    """The pairs, or None when the field is malformed (a repeated key included)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not _KEY.match(key) or not _VALUE.match(value) or key in out:
            return None
        out[key] = value
    return out
