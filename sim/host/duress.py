"""The silent alarm of a duress PIN.

A customer under threat enters their personal-safety PIN; the host approves as if it were
the normal PIN (the terminal must show nothing different), caps what may be taken, and
raises an alarm with where the terminal is. One session sends a PIN verification and
then a withdrawal, both carrying the duress PIN: the first raises the alarm, later ones
within the window only add what was asked (a follow-up), so the alarm center sees one
alarm per incident. The alarm goes out through the durable outbox, committed in the same
transaction as the authorisation: an alarm center that is down loses nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from atm_common.clock import Clock
from host_link.codec import Message
from host_link.errors import CodecError
from host_link.location import parse_field62
from sim.host import outbox

log = logging.getLogger(__name__)

ALARM_CENTER = "alarm-center"  # the outbox destination name
SCHEMA = """
CREATE TABLE IF NOT EXISTS duress_alarms (
    alarm_id TEXT PRIMARY KEY,
    pan_ref TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_at REAL NOT NULL
);
"""


def _location(request: Mapping[str, str]) -> dict[str, Any]:
    """The terminal's location from field 62; ``none`` lets the carrier be asked later."""
    try:
        where = parse_field62(request.get("62", ""))
    except CodecError as exc:
        log.warning("duress alarm: unreadable field 62 (%s); location unknown", exc)
        return {"lat": None, "lon": None, "source": "none", "age": None}
    source = where.source if where.source in ("gps", "site") else "none"
    if source == "none" or where.lat is None or where.lon is None:
        return {"lat": None, "lon": None, "source": "none", "age": None}
    return {"lat": where.lat, "lon": where.lon, "source": source, "age": where.age}


class AlarmDesk:
    def __init__(self, conn: sqlite3.Connection, clock: Clock, window: float = 1800.0) -> None:
        self.conn, self.clock, self.window = conn, clock, window
        self.opened: str | None = None  # the alarm the last call opened (not a follow-up)
        self.raised = 0  # alarms and follow-ups queued: the server wakes the outbox worker
        conn.executescript(SCHEMA)
        outbox.ensure_schema(conn)

    def raise_alarm(
        self, request: Message, *, pan_ref: str, masked_pan: str, account: str, peer_ip: str
    ) -> str:
        """Record the incident (inside the caller's transaction); returns its alarm id."""
        self.opened = None
        now = self.clock.now()
        epoch = now.timestamp()
        terminal = request.get("41", "")
        amount = int(request["4"]) if request.get("4", "").isdigit() else 0
        open_row = self.conn.execute(
            "SELECT alarm_id FROM duress_alarms WHERE pan_ref = ? AND terminal_id = ?"
            " AND last_at >= ? ORDER BY opened_at DESC LIMIT 1",
            (pan_ref, terminal, epoch - self.window),
        ).fetchone()
        if open_row is not None:
            alarm_id = str(open_row[0])
            self.conn.execute(
                "UPDATE duress_alarms SET last_at = ? WHERE alarm_id = ?", (epoch, alarm_id)
            )
            if amount:
                update = {
                    "alarm_id": alarm_id,
                    "update": True,
                    "update_id": f"{terminal}-{request.get('11')}-{request.get('7')}",
                    "time": now.isoformat(),
                    "amount_requested": amount,
                }
                outbox.enqueue(self.conn, "alarm", update, ALARM_CENTER, clock=self.clock)
                self.raised += 1
            return alarm_id
        alarm_id = f"{terminal}-{request.get('11')}-{request.get('7')}"
        self.conn.execute(
            "INSERT INTO duress_alarms VALUES (?,?,?,?,?)",
            (alarm_id, pan_ref, terminal, epoch, epoch),
        )
        payload = {
            "alarm_id": alarm_id,
            "time": now.isoformat(),
            "terminal_id": terminal,
            "terminal_ip": peer_ip,
            "location": _location(request),
            "masked_pan": masked_pan,
            "account": account,
            "amount_requested": amount,
        }
        outbox.enqueue(self.conn, "alarm", payload, ALARM_CENTER, clock=self.clock)
        self.raised += 1
        self.opened = alarm_id
        log.info("incident %s queued for the alarm center", alarm_id)  # no word at the terminal
        return alarm_id
