"""In-process simulated GPS receiver.

Why it exists: the terminal tags transactions and alarms with its location and must
react to a lost or stale fix (a kiosk being carried away stops getting fixes). Tests set
the position, drop the fix, or pin the fix time and advance a
:class:`~atm_common.clock.ManualClock` until it goes stale - all deterministic.

A fix with ``fix_time=None`` is *live*: every read is timestamped with the clock's "now",
as from a receiver that keeps tracking. A fix with a ``fix_time`` is frozen at that
instant and ages as the clock moves.
"""

from __future__ import annotations

import datetime as dt
import logging

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError
from terminal.drivers.base import DeviceStatus
from terminal.drivers.gps.base import Fix, Gps

log = logging.getLogger(__name__)


class SimGps(Gps):
    """A receiver whose sky is a script: :meth:`set_fix` and :meth:`lose_fix`."""

    blocking = False  # in-process state: nothing to wait on

    def __init__(
        self,
        clock: Clock | None = None,
        lat: float = 50.1109,
        lon: float = 8.6821,
        alt: float | None = None,
        quality: int = 1,
        satellites: int = 8,
        hdop: float = 0.9,
        fix_time: dt.datetime | None = None,
        max_age: float | None = None,
    ) -> None:
        super().__init__()
        self._clock: Clock = clock if clock is not None else SystemClock()
        if max_age is not None:
            self.max_age = max_age
        self._has_fix = True
        self._lat, self._lon, self._alt = lat, lon, alt
        self._quality, self._satellites, self._hdop = quality, satellites, hdop
        self._fix_time = fix_time
        try:
            self.set_fix(lat, lon, alt, quality, satellites, hdop, fix_time)
        except ValueError as exc:
            raise ConfigError("config", "devices.gps", str(exc)) from None

    def __repr__(self) -> str:
        state = "fix" if self._has_fix else "no fix"
        return f"SimGps({state}, lat={self._lat:.5f}, lon={self._lon:.5f})"

    # -- scripting ----------------------------------------------------------------------------

    def set_fix(
        self,
        lat: float,
        lon: float,
        alt: float | None = None,
        quality: int = 1,
        satellites: int = 8,
        hdop: float = 0.9,
        fix_time: dt.datetime | None = None,
    ) -> None:
        """The receiver (re)gains a fix at this position; live unless ``fix_time`` is given."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"position out of range: {lat}, {lon}")
        self._has_fix = True
        self._lat, self._lon, self._alt = lat, lon, alt
        self._quality, self._satellites, self._hdop = quality, satellites, hdop
        self._fix_time = fix_time
        log.debug("gps: fix set (quality %d, %d satellites)", quality, satellites)

    def lose_fix(self) -> None:
        """The receiver keeps talking but reports "no fix" (GGA quality 0)."""
        self._has_fix = False
        log.debug("gps: fix lost")

    # -- the terminal's side ----------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._clock.now()

    def _do_fix(self) -> Fix:
        now = self._clock.now()
        if not self._has_fix:
            return Fix(time=now, lat=0.0, lon=0.0, quality=0, satellites=0, valid=False)
        return Fix(
            time=self._fix_time if self._fix_time is not None else now,
            lat=self._lat,
            lon=self._lon,
            alt=self._alt,
            quality=self._quality,
            satellites=self._satellites,
            hdop=self._hdop,
            valid=self._quality > 0,
        )

    def _do_status(self) -> DeviceStatus:
        """DEGRADED without a usable fix: the terminal still works, location is unknown."""
        fix = self._do_fix()
        if not fix.valid or self.age(fix) > self.max_age:
            return DeviceStatus.DEGRADED
        return DeviceStatus.OK
