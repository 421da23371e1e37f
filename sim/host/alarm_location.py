"""Where a duress alarm sends help: the bank's register first, the terminal's word next.

A fixed ATM is bolted to the site the bank registered it at (``terminals.site_lat/lon``,
from the seed). What the terminal says in field 62 comes from a config file or a GPS
receiver that can be wrong (a config copied from another ATM, a fix near a tall
building, a receiver that was tampered with), while the register is what the bank
surveyed. So:

1. The terminal has a registered site: the alarm is placed there (``source: register``,
   with the site's name). When the terminal also reported a place, it goes along as
   ``reported`` with the distance between the two (``distance_m``): an operator sees the
   disagreement, and a large one (ATM ripped out and carried away, or a bad config) is
   worth a second patrol, never a reason to send the first one to the wrong place.
2. No registered site (a mobile POS): the terminal's own GPS fix or site, as reported.
3. Neither: ``none``, and the host's outbox asks the carrier before delivery.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from host_link.errors import CodecError
from host_link.location import parse_field62
from sim.host.routing import haversine_km

log = logging.getLogger(__name__)

DISAGREEMENT_M = 250.0  # farther apart than this, the host logs the disagreement
UNKNOWN: dict[str, Any] = {"lat": None, "lon": None, "source": "none", "age": None}


def reported_location(request: Mapping[str, str]) -> dict[str, Any]:
    """The terminal's own location from field 62; ``none`` when it has none."""
    try:
        where = parse_field62(request.get("62", ""))
    except CodecError as exc:
        log.warning("duress alarm: unreadable field 62 (%s); location unknown", exc)
        return dict(UNKNOWN)
    source = where.source if where.source in ("gps", "site") else "none"
    if source == "none" or where.lat is None or where.lon is None:
        return dict(UNKNOWN)
    return {"lat": where.lat, "lon": where.lon, "source": source, "age": where.age}


def alarm_location(
    conn: sqlite3.Connection, terminal_id: str, request: Mapping[str, str]
) -> dict[str, Any]:
    """The alarm's ``location`` under the rule above."""
    reported = reported_location(request)
    row = conn.execute(
        "SELECT site_name, site_lat, site_lon FROM terminals WHERE id = ?", (terminal_id,)
    ).fetchone()
    if row is None or row[1] is None or row[2] is None:
        return reported
    name, lat, lon = str(row[0]), float(row[1]), float(row[2])
    location: dict[str, Any] = {"lat": lat, "lon": lon, "source": "register", "age": None}
    if name:
        location["site"] = name
    if reported["source"] != "none":
        distance = round(haversine_km(lat, lon, reported["lat"], reported["lon"]) * 1000.0, 1)
        location["reported"] = reported
        location["distance_m"] = distance
        if distance > DISAGREEMENT_M:
            log.warning(
                "duress alarm: terminal %s reports %s %.5f,%.5f, %.0f m from its registered"
                " site %r: the alarm goes to the registered site",
                terminal_id,
                reported["source"],
                reported["lat"],
                reported["lon"],
                distance,
                name,
            )
    return location
