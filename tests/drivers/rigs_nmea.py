"""Contract rig for the NMEA GPS driver: :class:`NmeaGps` on ``sim://`` to a :class:`GpsEmulator`.

The emulator plays the sky (its ``set_fix``/``lose_fix`` are the contract's customer API),
so the whole GPS contract suite runs through the real framing and parsing code.
"""

from __future__ import annotations

import itertools
from typing import Any

from atm_common.clock import ManualClock
from sim.devices.emulator import register
from sim.devices.gps import GpsEmulator
from terminal.drivers.base import Device
from terminal.drivers.gps.nmea import NmeaGps

# Options the contract suite passes that describe the sky, not the driver.
_SKY_OPTIONS = frozenset(
    {"lat", "lon", "alt", "quality", "satellites", "hdop", "fix_time", "talker", "interval"}
)
_names = itertools.count(1)


def build_nmea(clock: ManualClock, **options: Any) -> tuple[Device, GpsEmulator]:
    sky = {key: options.pop(key) for key in list(options) if key in _SKY_OPTIONS}
    emulator = GpsEmulator(clock, **sky)
    url = register(f"gps-nmea-{next(_names)}", emulator)
    return NmeaGps(url, clock=clock, **options), emulator


EXTRA_RIGS = {"gps": {"nmea": build_nmea}}
