"""GPS receiver ABC: the current fix, its age and quality."""

from __future__ import annotations

import dataclasses
import datetime as dt
from abc import abstractmethod

from terminal.drivers.base import Device, InfoValue


@dataclasses.dataclass(frozen=True)
class Fix:
    """One position fix. ``valid`` is False for a receiver reporting "no fix"."""

    time: dt.datetime
    lat: float
    lon: float
    alt: float | None = None
    quality: int = 1  # GGA fix quality: 0 none, 1 GPS, 2 DGPS, ...
    satellites: int | None = None
    hdop: float | None = None
    valid: bool = True


class Gps(Device):
    kind = "gps"
    max_age: float = 60.0  # seconds after which a fix is stale

    def fix(self) -> Fix | None:
        """Latest valid fix no older than ``max_age``, else None (no fix or stale)."""
        self._require_open()
        fix = self._do_fix()
        if fix is None or not fix.valid or self.age(fix) > self.max_age:
            return None
        return fix

    def age(self, fix: Fix) -> float:
        return max(0.0, (self._now() - fix.time).total_seconds())

    def _do_info(self) -> dict[str, InfoValue]:
        return self._fix_info(self._do_fix())

    def _fix_info(self, fix: Fix | None) -> dict[str, InfoValue]:
        """The receiver's latest report for diagnostics: ``fix`` is ``valid``, ``stale``,
        ``no fix`` (the receiver says so) or ``none yet`` (nothing usable received)."""
        if fix is None:
            return {"fix": "none yet"}
        info: dict[str, InfoValue] = {"fix": "no fix"}
        if fix.valid:
            age = self.age(fix)
            info["fix"] = "stale" if age > self.max_age else "valid"
            info["lat"], info["lon"] = round(fix.lat, 6), round(fix.lon, 6)
            if fix.alt is not None:
                info["alt_m"] = fix.alt
            info["fix_age_s"] = round(age, 1)
        if fix.satellites is not None:
            info["satellites"] = fix.satellites
        if fix.hdop is not None:
            info["hdop"] = fix.hdop
        return info

    @abstractmethod
    def _do_fix(self) -> Fix | None: ...

    @abstractmethod
    def _now(self) -> dt.datetime: ...
