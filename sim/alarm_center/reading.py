"""Reading the alarm center's file for people: ``atm alarm-center list`` and ``conflicts``.

Kept apart from the store that writes (:mod:`sim.alarm_center.store`) because the CLI
reads the file of a *running* center: it opens it read-only and never takes the
server's lock, and a reader on the machine needs file access, not the HTTP operator
token (``GET /alarms``). The row builders are shared with the store, so what the CLI
prints and what the HTTP API answers cannot drift apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atm_common.money import format_minor
from sim.alarm_center.contract import AlarmError


class AlarmStoreError(AlarmError):
    """The store file is missing or unreadable."""


def rows(conn: sqlite3.Connection, alarm_id: str | None = None) -> list[dict[str, Any]]:
    """Alarms (or the one ``alarm_id``) in arrival order, with evidence summaries and
    follow-ups."""
    where, args = ("WHERE alarm_id = ?", (alarm_id,)) if alarm_id is not None else ("", ())
    alarms = []
    for seq, aid, received, record in conn.execute(
        f"SELECT seq, alarm_id, received_at, record FROM alarms {where} ORDER BY seq", args
    ):
        alarm = {"seq": seq, "received_at": received, **json.loads(record)}
        alarm["evidence"] = [
            {"content_type": ct, "bytes": n, "sha256": sha}
            for ct, n, sha in conn.execute(
                "SELECT content_type, length(data), sha256 FROM evidence"
                " WHERE alarm_id = ? ORDER BY idx",
                (aid,),
            )
        ]
        alarm["updates"] = [
            {"update_id": uid, "time": t, "amount_requested": amount}
            for uid, t, amount in conn.execute(
                "SELECT update_id, time, amount_requested FROM updates WHERE alarm_id = ?"
                " ORDER BY rowid",
                (aid,),
            )
        ]
        alarms.append(alarm)
    return alarms


def conflict_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Refused conflicting copies in arrival order (none in a store that predates them)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'conflicts'").fetchone() is None:
        return []
    return [
        {
            "seq": seq,
            "kind": kind,
            "alarm_id": alarm_id,
            "update_id": update_id,
            "received_at": received,
            "refused": json.loads(record),
        }
        for seq, kind, alarm_id, update_id, received, record in conn.execute(
            "SELECT seq, kind, alarm_id, update_id, received_at, record FROM conflicts ORDER BY seq"
        )
    ]


def _read(
    path: str | Path, reader: Callable[[sqlite3.Connection], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise AlarmStoreError(f"{path}: no alarm store here")
    try:
        conn = sqlite3.connect(f"file:{resolved}?mode=ro", uri=True)
        try:
            return reader(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AlarmStoreError(f"{path}: cannot read the alarm store: {exc}") from exc


def list_alarms(path: str | Path) -> list[dict[str, Any]]:
    """Read the alarms of a (possibly running) alarm center without writing to it."""
    return _read(path, rows)


def list_conflicts(path: str | Path) -> list[dict[str, Any]]:
    """Read the conflicts a (possibly running) alarm center refused."""
    return _read(path, conflict_rows)


def describe_location(loc: dict[str, Any]) -> str:
    """Where, and by whose word: ``52.36670,13.50330 (register: Airport hall B; the
    terminal reported 52.52000,13.40500 (site), 17324 m away)``."""
    if loc.get("lat") is None:
        return "location unknown"
    source = str(loc["source"]) + (f": {loc['site']}" if loc.get("site") else "")
    reported = loc.get("reported")
    if isinstance(reported, dict):
        source += (
            f"; the terminal reported {reported['lat']:.5f},{reported['lon']:.5f}"
            f" ({reported['source']}), {loc.get('distance_m', 0):.0f} m away"
        )
    return f"{loc['lat']:.5f},{loc['lon']:.5f} ({source})"


def format_alarms(alarms: list[dict[str, Any]]) -> list[str]:
    """One line per alarm for ``atm alarm-center list`` (the CLI prints them)."""
    lines = []
    for a in alarms:
        where = describe_location(a["location"])
        lines.append(
            f"{a['time']}  {a['alarm_id']}  terminal {a['terminal_id']} ({a['terminal_ip']})"
            f"  {where}  card {a['masked_pan']}  account {a['account']}"
            f"  requested {format_minor(a['amount_requested'])}  evidence {len(a['evidence'])}"
        )
    return lines


def format_conflicts(conflicts: list[dict[str, Any]]) -> list[str]:
    """One line per refused copy for ``atm alarm-center conflicts``."""
    return [
        f"{c['received_at']}  CONFLICT {c['kind']} {c['alarm_id']}"
        + (f" update {c['update_id']}" if c["update_id"] else "")
        + f"  refused copy: {json.dumps(c['refused'], sort_keys=True)}"
        for c in conflicts
    ]
