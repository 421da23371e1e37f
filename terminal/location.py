"""Where the terminal is, for every request: GPS, else the configured site, else unknown.

The wire format (private field 62) is :mod:`host_link.location`; this module only decides
which source to trust now.
"""

from __future__ import annotations

import logging

from host_link.location import Location
from terminal.config import SiteLocation
from terminal.drivers.gps.base import Gps
from terminal.errors import DeviceError

log = logging.getLogger(__name__)


def current_location(gps: Gps | None, site: SiteLocation | None) -> Location:
    """The best location now: a fresh GPS fix, else the configured site, else none."""
    if gps is not None:
        try:
            fix = gps.fix()
        except DeviceError as exc:
            log.warning("GPS unavailable, using the site location: %s", exc)
            fix = None
        if fix is not None:
            return Location(
                "gps",
                fix.lat,
                fix.lon,
                age=gps.age(fix),
                quality=fix.quality,
                satellites=fix.satellites,
                hdop=fix.hdop,
            )
    if site is not None:
        return Location("site", site.lat, site.lon)
    return Location("none")
