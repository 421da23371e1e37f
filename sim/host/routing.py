"""Which ATM should a cardless customer walk or drive to? The one they reach soonest.

The bank design asks for the outlet with the shortest arrival time given congestion.
The host has no map or traffic feed, so both are modelled, deterministically (the same
place, time and history always give the same answer, which tests and replays need):

* **Distance:** great-circle (haversine) between the customer and the ATM's site, times a
  ``detour`` factor for streets not being straight lines.
* **Congestion:** the world is cut into ``cell_deg`` x ``cell_deg`` grid cells (about
  1.1 km at 0.01 deg). Each cell has a fixed "busyness" in [0.3, 1.0) from a hash of its
  indices (downtown vs outskirts), and the time of day a rush-hour curve (peaks at 08:00
  and 17:30 local solar time = UTC + longitude/15 h). A cell's travel-time factor is
  ``1 + busyness * (0.2 + 1.3 * rush)``: from 1.06 (quiet cell at night) to 2.5 (busy
  cell at the peak). A route's factor is the mean over points sampled every ~0.5 km along
  the straight line, so crossing a busy centre costs more than skirting it.
* **Travel time:** distance x factor / ``speed_kmh``.
* **Wait at the ATM:** its session rate (0200 withdrawals it sent in the last
  ``window_min``, scaled to an hour: one customer session ends in one withdrawal) fed to
  an M/M/1 queue with a ``service_min`` mean session: wait = rho / (1 - rho) x service,
  capped at ``max_wait_min`` as rho nears 1.

Candidates are ATMs in service (status ``in_service``: heard from since their last
sign-off; and, with ``stale_minutes``, heard from that recently) whose cash estimate
(``terminals.cash_on_hand``, kept from the ledger's GL-CASH balance) covers the amount.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import sqlite3
from typing import Any

from sim.host.supervision.fleet import not_serving

EARTH_RADIUS_KM = 6371.0088


@dataclasses.dataclass(frozen=True)
class RouteModel:
    speed_kmh: float = 30.0  # urban driving without traffic
    detour: float = 1.3
    cell_deg: float = 0.01
    service_min: float = 2.0  # one ATM session
    window_min: float = 60.0
    max_wait_min: float = 60.0
    stale_minutes: float = 0.0  # 0: a terminal stays in service until it signs off
    sample_km: float = 0.5


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def busyness(lat: float, lon: float, cell_deg: float = 0.01) -> float:
    """A cell's fixed busyness in [0.3, 1.0): a hash of its grid indices."""
    cell = f"{math.floor(lat / cell_deg)}:{math.floor(lon / cell_deg)}"
    digest = hashlib.blake2b(cell.encode(), digest_size=8).digest()
    return 0.3 + 0.7 * int.from_bytes(digest, "big") / 2**64


def rush(hour: float) -> float:
    """Rush-hour intensity 0..1 at a local hour: morning and evening peaks."""
    morning = math.exp(-(((hour - 8.0) / 1.2) ** 2))
    evening = math.exp(-(((hour - 17.5) / 1.5) ** 2))
    return min(1.0, morning + evening)


def congestion(lat: float, lon: float, when: dt.datetime, cell_deg: float = 0.01) -> float:
    """Travel-time factor (>= 1) of the cell at ``lat``, ``lon`` at ``when`` (aware)."""
    utc = when.astimezone(dt.UTC)
    hour = (utc.hour + utc.minute / 60 + lon / 15) % 24
    return 1.0 + busyness(lat, lon, cell_deg) * (0.2 + 1.3 * rush(hour))


def route_factor(
    origin: tuple[float, float], dest: tuple[float, float], when: dt.datetime, model: RouteModel
) -> float:
    """Mean congestion over points sampled along the straight line."""
    km = haversine_km(*origin, *dest)
    n = max(2, min(50, math.ceil(km / model.sample_km) + 1))
    points = [
        (
            origin[0] + (dest[0] - origin[0]) * i / (n - 1),
            origin[1] + (dest[1] - origin[1]) * i / (n - 1),
        )
        for i in range(n)
    ]
    return sum(congestion(lat, lon, when, model.cell_deg) for lat, lon in points) / n


def expected_wait(sessions_per_hour: float, model: RouteModel) -> float:
    """M/M/1 mean wait in the queue, minutes."""
    rho = sessions_per_hour * model.service_min / 60
    if rho >= 0.99:
        return model.max_wait_min
    return min(model.max_wait_min, rho / (1 - rho) * model.service_min)


def rank_atms(
    conn: sqlite3.Connection,
    now: dt.datetime,
    lat: float,
    lon: float,
    amount: int,
    model: RouteModel | None = None,
) -> dict[str, Any]:
    """``{"atms": [...best first], "excluded": [{terminal_id, reason}]}``."""
    model = model or RouteModel()
    since = (now - dt.timedelta(minutes=model.window_min)).isoformat()
    rows = conn.execute(
        "SELECT t.*, COALESCE(t.cash_on_hand, a.debits_posted - a.credits_posted) AS cash,"
        " (SELECT COUNT(*) FROM requests r WHERE r.terminal_id = t.id AND r.mti = '0200'"
        "  AND r.received_at >= ?) AS recent"
        " FROM terminals t JOIN accounts a ON a.id = t.cash_account ORDER BY t.id",
        (since,),
    ).fetchall()
    atms: list[dict[str, Any]] = []
    excluded: list[dict[str, str]] = []
    unavailable = not_serving(conn)  # supervisor mode, a cash device needing attention now
    for row in rows:
        reason = unavailable.get(row["id"]) or _excluded(row, now, amount, model)
        if reason:
            excluded.append({"terminal_id": row["id"], "reason": reason})
            continue
        site = (float(row["site_lat"]), float(row["site_lon"]))
        km = haversine_km(lat, lon, *site) * model.detour
        factor = route_factor((lat, lon), site, now, model)
        travel = km / model.speed_kmh * 60 * factor
        rate = row["recent"] * 60 / model.window_min
        wait = expected_wait(rate, model)
        atms.append(
            {
                "terminal_id": row["id"],
                "site": row["site_name"],
                "lat": site[0],
                "lon": site[1],
                "distance_km": round(km, 3),
                "congestion": round(factor, 3),
                "eta_min": round(travel, 2),
                "sessions_per_hour": round(rate, 2),
                "wait_min": round(wait, 2),
                "total_min": round(travel + wait, 2),
            }
        )
    atms.sort(key=lambda a: (a["total_min"], a["terminal_id"]))
    return {"atms": atms, "excluded": excluded}


def _excluded(row: sqlite3.Row, now: dt.datetime, amount: int, model: RouteModel) -> str:
    if row["site_lat"] is None or row["site_lon"] is None:
        return "no site location"
    if row["status"] != "in_service":
        return f"not in service ({row['status']})"
    if model.stale_minutes and row["last_seen"]:
        seen = dt.datetime.fromisoformat(row["last_seen"])
        if now - seen > dt.timedelta(minutes=model.stale_minutes):
            return "not heard from recently"
    if row["cash"] is None or row["cash"] < amount:
        return "not enough cash"
    return ""
