"""Contract rig for the serial EPP backend: the real driver talking to :class:`EppEmulator`.

The driver opens ``sim://<unique name>``, so every byte goes through the framer, the
retry logic and pyserial, while the emulator shares the test's manual clock.
"""

from __future__ import annotations

import itertools
from typing import Any

from atm_common.clock import ManualClock
from sim.devices.emulator import register
from sim.devices.epp import EppEmulator
from terminal.drivers.pinpad.epp import EppPinPad

from .conftest import TEST_PIN_KEY

_names = itertools.count(1)
_PAD_OPTIONS = ("security", "mac_key", "ik", "ik_id")


def build_epp(clock: ManualClock, **options: Any) -> tuple[EppPinPad, EppEmulator]:
    """(driver on a fresh sim:// URL, emulator). The key options SimPinPad takes
    (``pin_key``, ``tmk``, ``mac_key``, ``security``, ``ik``, ``ik_id``) and ``key_interval``
    go to the emulator, since the pad holds the keys; everything else to the driver."""
    emulator = EppEmulator(
        clock,
        pin_key=options.pop("pin_key", TEST_PIN_KEY),
        tmk=options.pop("tmk", None),
        key_interval=options.pop("key_interval", 0.0),
        **{k: options.pop(k) for k in _PAD_OPTIONS if k in options},
    )
    url = register(f"epp-rig-{next(_names)}", emulator)
    return EppPinPad(url, clock=clock, **options), emulator


EXTRA_RIGS = {"pinpad": {"epp": build_epp}}
