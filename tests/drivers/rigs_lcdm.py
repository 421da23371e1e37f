"""Contract-suite rig for the LCDM dispenser: the real driver on ``sim://`` to the emulator.

The suite speaks in ``cassettes=((denomination, count), ...)``; the LCDM driver only knows
denominations (configured) and counts (configured, then tracked), while the emulator holds
the notes. The builder splits the one option into both sides.

The same driver over a real pseudo-terminal (:class:`sim.devices.pty.PtyBridge`) runs in
``test_lcdm_pty.py`` rather than as a rig here: the suite drives a manual clock, and a
pty read waits in real time, so its exact-timing assertions cannot hold there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from atm_common.clock import Clock
from sim.devices.emulator import register
from sim.devices.lcdm import LcdmEmulator
from terminal.drivers.base import Device
from terminal.drivers.dispenser.lcdm import LcdmDispenser

DEFAULT_CASSETTES = ((1000, 100), (2000, 100), (5000, 50))
EMULATOR_OPTIONS = ("seconds_per_note",)
_names = itertools.count()


def build_lcdm(
    clock: Clock,
    cassettes: Sequence[tuple[int, int]] = DEFAULT_CASSETTES,
    **options: Any,
) -> tuple[Device, LcdmEmulator]:
    emulator_options = {k: options.pop(k) for k in EMULATOR_OPTIONS if k in options}
    emulator = LcdmEmulator(cassettes, clock=clock, **emulator_options)
    url = register(f"lcdm-contract-{next(_names)}", emulator)
    device = LcdmDispenser(
        url,
        clock,
        denominations=[d for d, _ in cassettes],
        counts=[n for _, n in cassettes],
        **options,
    )
    return device, emulator


EXTRA_RIGS = {"dispenser": {"lcdm": build_lcdm}}
