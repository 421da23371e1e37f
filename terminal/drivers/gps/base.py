"""GPS receiver ABC: the current fix, its age and quality."""

from __future__ import annotations

import dataclasses
import datetime as dt
from abc import abstractmethod

from terminal.drivers.base import Device


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

    @abstractmethod
    def _do_fix(self) -> Fix | None: ...

    @abstractmethod
    def _now(self) -> dt.datetime: ...
