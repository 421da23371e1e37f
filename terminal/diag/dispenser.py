"""``atm diag dispenser``: cassette counts, sensors, and a test dispense to the reject bin."""

from __future__ import annotations

from typing import Any

from terminal.drivers.dispenser.base import Dispenser
from terminal.drivers.dispenser.lcdm import LcdmDispenser


def report(dispenser: Dispenser, *, test: bool = False) -> dict[str, Any]:
    """What a field engineer checks first. ``test`` picks one note per cassette into the
    reject bin (LCDM only): proof the pick path works, without paying anyone."""
    out: dict[str, Any] = {
        "backend": type(dispenser).__name__,
        "status": dispenser.status().value,
        "cassettes": [
            {
                "cassette": c.index,
                "denomination": c.denomination,
                "count": c.count,
                "value": c.value,
                "near_end": c.near_end,
            }
            for c in dispenser.cassettes()
        ],
    }
    if isinstance(dispenser, LcdmDispenser):
        out["sensors"] = dispenser.sensor_report()
        if test:
            out["test_dispense"] = dispenser.test_dispense(
                {c["cassette"]: 1 for c in out["cassettes"]}
            )
            out["cassettes_after_test"] = [
                {"cassette": c.index, "count": c.count} for c in dispenser.cassettes()
            ]
    elif test:
        out["test_dispense"] = "not supported by this backend"
    return out
