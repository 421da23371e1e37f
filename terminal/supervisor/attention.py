"""The device status list (NCR's model): each device's state as "who must act, how soon".

Why a mapping and not the raw state: a bank's operations desk does not care that a
printer is ``degraded``; it cares that a branch operator must change the paper roll
*soon*, and that a jammed dispenser needs an engineer *now*. The list is computed from
what the devices say at the moment it is asked, so an attention clears by itself when
the device recovers (nothing is latched here).

State -> attention: ``ok`` none; ``degraded`` soon; ``fault``, ``offline``, ``error`` now.
Who: what a branch person can fix (paper out or low, cover open, cassettes low) is the
operator's; the rest (jams, a device that does not answer, a driver that fails) the
engineer's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from host_link.supervision import DeviceEntry

_OPERATOR_FAULTS = ("paper out", "cover open", "paper ran out")
_OPERATOR_SOON = ("printer", "dispenser")  # paper low, cassette near end: refill


def attention_for(kind: str, state: str, error: str | None = None) -> tuple[str, str]:
    """(attention, actor) for one device: ("none"|"soon"|"now", "none"|"operator"|"engineer")."""
    if state == "ok":
        return "none", "none"
    if state == "degraded":
        return "soon", "operator" if kind in _OPERATOR_SOON else "engineer"
    if kind == "printer" and state == "fault" and error and error.startswith(_OPERATOR_FAULTS):
        return "now", "operator"
    return "now", "engineer"


def status_list(devices: Iterable[Mapping[str, Any]]) -> list[DeviceEntry]:
    """The device status list from ``atm diag status`` device dicts (kind, state, error)."""
    out = []
    for d in devices:
        attention, actor = attention_for(d["kind"], d["state"], d.get("error"))
        out.append(DeviceEntry(d["kind"], d["state"], attention, actor))
    return out


def worst(entries: Iterable[DeviceEntry]) -> str:
    levels = [e.attention for e in entries]
    return "now" if "now" in levels else "soon" if "soon" in levels else "none"
