"""Field 63 of the supervision 0800s: device status list, cash counts, balancing.

Why a format of its own: the status message and the storage exchange carry lists (one
entry per device, one per cassette), and both ends must agree on them exactly, to the
note. Entries are ``;``-separated ``KEY=value`` pairs; list values are ``,``-separated
records of ``:``-separated fields, all plain ASCII digits and names, so nothing needs
escaping. A payload that does not parse is a :class:`SupervisionFormatError` naming the
part at fault (the host answers 30, format error).

- status (0800/161): ``M=<mode>;C=<cash>;D=<kind>:<state>:<attention>:<actor>,...``
- exchange start (0800/181): no data; the host answers ``X=<exchange id>;H=<host cash>``
- exchange end (0800/182): ``X=<exchange id of the 181>;K=<pos>:<denomination>:<loaded>:
  <dispensed>:<rejected>:<retracted>:<remaining>,...`` (the counts the supervisor found)
  and ``N=<pos>:<denomination>:<count>,...`` (what was loaded)
- the host's answer to the 182: ``X=<id>;H=<expected>;F=<found>;D=<difference>;
  L=<loaded>``, the same figures again for a repeated id (nothing booked twice)

The terminal reads the host's answers with :func:`decode_exchange_start` and
:func:`decode_balancing`: every figure is checked before anything is changed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from atm_common.errors import RemoteProtocolError

_NAME = re.compile(r"^[a-z_]{1,24}$")
ATTENTION = ("none", "soon", "now")
ACTORS = ("none", "operator", "engineer")


class SupervisionFormatError(RemoteProtocolError, ValueError):
    """A supervision payload that does not follow the format."""


@dataclasses.dataclass(frozen=True)
class DeviceEntry:
    kind: str
    state: str
    attention: str  # none / soon / now
    actor: str  # none / operator / engineer


@dataclasses.dataclass(frozen=True)
class CassetteCount:
    """One cassette at an exchange: what its counters say and what is in it."""

    position: int
    denomination: int
    loaded: int = 0
    dispensed: int = 0
    rejected: int = 0  # notes of this cassette in the reject bin
    retracted: int = 0  # notes of this denomination in the retract bin
    remaining: int = 0

    @property
    def found_amount(self) -> int:
        """Cash physically in the machine from this cassette: counted, rejected, retracted."""
        return (self.remaining + self.rejected + self.retracted) * self.denomination


def pairs(payload: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(";") if payload else ():
        key, sep, value = part.partition("=")
        if not sep or not key or key in out:
            raise SupervisionFormatError(f"supervision data: bad or repeated part {part!r}")
        out[key] = value
    return out


def _int(value: str, what: str) -> int:
    if not re.fullmatch(r"-?\d{1,12}", value):
        raise SupervisionFormatError(f"supervision data: {what} is not a whole number")
    return int(value)


def encode_status(mode: str, cash: int, devices: Sequence[DeviceEntry]) -> str:
    items = ",".join(f"{d.kind}:{d.state}:{d.attention}:{d.actor}" for d in devices)
    return f"M={mode};C={cash};D={items}"


def decode_status(payload: str) -> tuple[str, int, list[DeviceEntry]]:
    p = pairs(payload)
    try:
        mode, cash, items = p["M"], _int(p["C"], "C"), p["D"]
    except KeyError as exc:
        raise SupervisionFormatError(f"supervision data: {exc.args[0]} is missing") from None
    if not _NAME.match(mode):
        raise SupervisionFormatError("supervision data: M is not a mode name")
    devices = []
    for item in items.split(",") if items else ():
        fields = item.split(":")
        if len(fields) != 4 or not all(_NAME.match(f) for f in fields):
            raise SupervisionFormatError(f"supervision data: bad device entry {item!r}")
        if fields[2] not in ATTENTION or fields[3] not in ACTORS:
            raise SupervisionFormatError(f"supervision data: bad attention in {item!r}")
        devices.append(DeviceEntry(*fields))
    return mode, cash, devices


def encode_exchange(
    found: Sequence[CassetteCount], loaded: Sequence[tuple[int, int, int]], exchange_id: str = ""
) -> str:
    """The 182's data; ``exchange_id`` (the 181's ``X=``) makes a resend recognisable."""
    k = ",".join(
        f"{c.position}:{c.denomination}:{c.loaded}:{c.dispensed}:{c.rejected}:{c.retracted}:"
        f"{c.remaining}"
        for c in found
    )
    n = ",".join(f"{pos}:{denom}:{count}" for pos, denom, count in loaded)
    return (f"X={exchange_id};" if exchange_id else "") + f"K={k};N={n}"


def decode_exchange(payload: str) -> tuple[list[CassetteCount], list[tuple[int, int, int]]]:
    p = pairs(payload)
    if "K" not in p or "N" not in p:
        raise SupervisionFormatError("supervision data: K and N are required")
    found = []
    for item in p["K"].split(",") if p["K"] else ():
        fields = item.split(":")
        if len(fields) != 7:
            raise SupervisionFormatError(f"supervision data: bad cassette entry {item!r}")
        found.append(CassetteCount(*(_int(f, "a cassette count") for f in fields)))
    loaded = []
    for item in p["N"].split(",") if p["N"] else ():
        fields = item.split(":")
        if len(fields) != 3:
            raise SupervisionFormatError(f"supervision data: bad load entry {item!r}")
        pos, denom, count = (_int(f, "a load count") for f in fields)
        loaded.append((pos, denom, count))
    return found, loaded


_EXCHANGE_ID = re.compile(r"^X[0-9a-f]{1,24}$")


def exchange_id(value: str) -> str:
    """An exchange id as the host hands it out (``X`` and hex), or a format error."""
    if not _EXCHANGE_ID.match(value):
        raise SupervisionFormatError("supervision data: X is not an exchange id")
    return value


def _figures(payload: str, keys: str) -> dict[str, str]:
    p = pairs(payload)
    missing = [k for k in keys if k not in p]
    if missing:
        raise SupervisionFormatError(f"supervision data: {', '.join(missing)} missing")
    return p


def decode_exchange_start(payload: str) -> tuple[str, int]:
    """The host's answer to the 181: (exchange id, host cash)."""
    p = _figures(payload, "XH")
    return exchange_id(p["X"]), _int(p["H"], "H")


@dataclasses.dataclass(frozen=True)
class BalancingFigures:
    """The host's answer to the 182, every figure checked."""

    exchange_id: str
    expected: int  # H
    found: int  # F
    difference: int  # D
    loaded: int  # L


def decode_balancing(payload: str) -> BalancingFigures:
    p = _figures(payload, "XHFDL")
    return BalancingFigures(
        exchange_id(p["X"]),
        *(_int(p[k], k) for k in "HFDL"),
    )


def encode_pairs(values: Mapping[str, int | str]) -> str:
    return ";".join(f"{k}={v}" for k, v in values.items())
