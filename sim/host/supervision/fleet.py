"""Every terminal as the bank sees it: mode, devices' attention, cash, last heard.

One read for ``atm host status`` (and its JSON) and for the cardless router, so the
operator's screen and the routing of customers never disagree about which machine can
serve: a terminal in supervisor mode or with a device needing attention *now* on the
path of cash (dispenser, card reader, PIN pad) is not sent customers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from atm_common.errors import ConfigError
from atm_common.money import format_minor
from sim.host import storage
from sim.host.db import connect_readonly

LEVELS = {"none": 0, "soon": 1, "now": 2}
CASH_PATH = ("dispenser", "card_reader", "pinpad")  # without these no one gets cash


def list_terminals(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """``[{terminal_id, site, status, mode, last_seen, cash_on_hand, reported_cash,
    attention, devices: [{kind, state, attention, actor}], last_exchange: {id, ended_at,
    difference} or None}]`` by terminal id. The last exchange is how a replenisher whose
    0800/182 went unanswered sees whether the host booked it."""
    devices: dict[str, list[dict[str, str]]] = {}
    for row in conn.execute(
        "SELECT terminal_id, kind, state, attention, actor FROM terminal_devices"
        " ORDER BY terminal_id, kind"
    ):
        devices.setdefault(row[0], []).append(
            {"kind": row[1], "state": row[2], "attention": row[3], "actor": row[4]}
        )
    exchanges: dict[str, dict[str, Any]] = {}
    for row in conn.execute(
        "SELECT terminal_id, id, ended_at, difference FROM cash_exchanges ORDER BY ended_at, id"
    ):
        exchanges[row[0]] = {"id": row[1], "ended_at": row[2], "difference": row[3]}
    out = []
    for row in conn.execute(
        "SELECT t.id, t.site_name, t.status, t.last_seen, t.cash_on_hand, m.mode,"
        " m.reported_cash, m.supervisor FROM terminals t"
        " LEFT JOIN terminal_modes m ON m.terminal_id = t.id ORDER BY t.id"
    ):
        own = devices.get(row[0], [])
        worst = max((LEVELS.get(d["attention"], 0) for d in own), default=0)
        out.append(
            {
                "terminal_id": row[0],
                "site": row[1],
                "status": row[2],
                "mode": row[5] or ("unknown" if row[2] == "unknown" else row[2]),
                "supervisor": row[7] or "",
                "last_seen": row[3],
                "cash_on_hand": row[4],
                "reported_cash": row[6],
                "attention": next(k for k, v in LEVELS.items() if v == worst),
                "devices": own,
                "last_exchange": exchanges.get(row[0]),
            }
        )
    return out


def not_serving(conn: sqlite3.Connection) -> dict[str, str]:
    """terminal id -> why the router must not send it customers (supervision data)."""
    reasons: dict[str, str] = {}
    for terminal_id, mode in conn.execute("SELECT terminal_id, mode FROM terminal_modes"):
        if mode in ("supervisor", "exchange", "out_of_service"):
            reasons[terminal_id] = f"in {mode.replace('_', ' ')} mode"
    for terminal_id, kind in conn.execute(
        "SELECT terminal_id, kind FROM terminal_devices WHERE attention = 'now'"
    ):
        if kind in CASH_PATH:
            reasons.setdefault(terminal_id, f"{kind} needs attention now")
    return reasons


def _when(iso: str | None) -> str:
    """A host timestamp (ISO 8601, UTC) to the second, for people."""
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else "never"


def format_fleet(rows: list[dict[str, Any]], money: Any = None) -> str:
    """The human view: one line per terminal, then every device it reported with its
    attention level, the ones that need someone first with their state and who acts."""
    lines = [f"{'TERMINAL':<10}{'MODE':<14}{'ATTN':<6}{'CASH':>14}  LAST SEEN"]
    for t in rows:
        cash = t["cash_on_hand"]
        shown = "-" if cash is None else (money(cash) if money else str(cash))
        lines.append(
            f"{t['terminal_id']:<10}{t['mode']:<14}{t['attention']:<6}{shown:>14}"
            f"  {_when(t['last_seen'])}"
        )
        last = t.get("last_exchange")
        if last:
            difference = money(last["difference"]) if money else str(last["difference"])
            lines.append(
                f"    last exchange {last['id']} at {_when(last['ended_at'])},"
                f" difference {difference}"
            )
        devices = sorted(t["devices"], key=lambda d: d["attention"] == "none")
        for d in devices:
            if d["attention"] != "none":
                lines.append(f"    {d['kind']}: {d['state']}, {d['attention']} ({d['actor']})")
        fine = [d["kind"] for d in devices if d["attention"] == "none"]
        if fine:
            lines.append(f"    no attention: {', '.join(fine)}")
        elif not devices:
            lines.append("    no device status reported yet")
    return "\n".join(lines)


def host_status(path: Path | str, *, as_json: bool = False) -> str:
    """``atm host status``: the fleet view of a host database (read-only; the host may
    run): an SQLite file or a PostgreSQL URL, as ``atm host --db`` takes it."""
    shown = storage.redact(path)
    if not storage.is_postgres(path) and not Path(path).exists():
        raise ConfigError(shown, "db", "no host database here (atm host status --db FILE)")
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        raise ConfigError(
            shown, "db", f"cannot open the host database ({' '.join(str(exc).split())})"
        ) from None
    try:
        rows = list_terminals(conn)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            shown, "db", f"not a host database with supervision data ({exc})"
        ) from None
    finally:
        conn.close()
    if as_json:
        return json.dumps({"terminals": rows}, indent=2)
    return format_fleet(rows, format_minor)
