"""The silent alarm of a duress PIN.

A customer under threat enters their personal-safety PIN; the host approves as if it were
the normal PIN (the terminal must show nothing different), caps what may be taken, and
raises an alarm with where the terminal is (the bank's register of its site first, see
:mod:`sim.host.alarm_location`). One session sends a PIN verification and
then a withdrawal, both carrying the duress PIN: the first raises the alarm, later ones
within the window only add what was asked (a follow-up), so the alarm center sees one
alarm per incident. The alarm goes out through the durable outbox, committed in the same
transaction as the authorisation: an alarm center that is down loses nothing.

An incident has two random names, and neither is built from anything on the wire. The
alarm id is what the alarm center files it under; it never leaves the bank's network,
so nobody watching terminals can know it in advance (it used to be terminal, STAN and
transmission time, all of them visible, which let a forged alarm take the real one's
place). The evidence reference is what the terminal is given in the 0110 (``REF=``,
sealed in field 63, see :mod:`host_link.evidence`) to send its snapshots under; the host
maps it back to the incident here, so the terminal, and whoever reads its traffic, never
learns the alarm id.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3

from atm_common.clock import Clock
from host_link.codec import Message
from sim.host import outbox
from sim.host.alarm_location import alarm_location

log = logging.getLogger(__name__)

ALARM_CENTER = "alarm-center"  # the outbox destination name
SCHEMA = """
CREATE TABLE IF NOT EXISTS duress_alarms (
    alarm_id TEXT PRIMARY KEY,      -- random; the alarm center's key, never on the wire
    pan_ref TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_at REAL NOT NULL,
    evidence_ref TEXT               -- random; what the terminal sends snapshots under
);
"""


def new_id(kind: str) -> str:
    """A random name (128 bits) with a readable prefix: nothing about it can be guessed
    from the traffic. Not hex, so it is never mistaken for (or by a scan, for) a key."""
    return f"{kind}-{secrets.token_urlsafe(16)}"


def _migrate(conn: sqlite3.Connection) -> None:
    """A database from before evidence references gets the column (old incidents keep
    none: snapshots for them are refused)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(duress_alarms)")}
    if "evidence_ref" not in columns:
        conn.execute("ALTER TABLE duress_alarms ADD COLUMN evidence_ref TEXT")
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS duress_alarms_evidence_ref"
        " ON duress_alarms (evidence_ref)"
    )
    conn.execute(  # the open incident of a card at a terminal, looked up on every duress PIN
        "CREATE INDEX IF NOT EXISTS duress_alarms_card_terminal"
        " ON duress_alarms (pan_ref, terminal_id, last_at)"
    )


class AlarmDesk:
    def __init__(self, conn: sqlite3.Connection, clock: Clock, window: float = 1800.0) -> None:
        self.conn, self.clock, self.window = conn, clock, window
        self.opened: str | None = None  # the alarm the last call opened (not a follow-up)
        self.opened_ref: str | None = None  # its evidence reference, for the 0110
        self.raised = 0  # alarms and follow-ups queued: the server wakes the outbox worker
        conn.executescript(SCHEMA)
        _migrate(conn)
        outbox.ensure_schema(conn)

    def raise_alarm(
        self, request: Message, *, pan_ref: str, masked_pan: str, account: str, peer_ip: str
    ) -> str:
        """Record the incident (inside the caller's transaction); returns its alarm id."""
        self.opened = self.opened_ref = None
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
                    "update_id": new_id("upd"),  # kept in the outbox: retries reuse it
                    "time": now.isoformat(),
                    "amount_requested": amount,
                }
                outbox.enqueue(self.conn, "alarm", update, ALARM_CENTER, clock=self.clock)
                self.raised += 1
            return alarm_id
        alarm_id, evidence_ref = new_id("alm"), new_id("evr")
        self.conn.execute(
            "INSERT INTO duress_alarms (alarm_id, pan_ref, terminal_id, opened_at, last_at,"
            " evidence_ref) VALUES (?,?,?,?,?,?)",
            (alarm_id, pan_ref, terminal, epoch, epoch, evidence_ref),
        )
        payload = {
            "alarm_id": alarm_id,
            "time": now.isoformat(),
            "terminal_id": terminal,
            "terminal_ip": peer_ip,
            "location": alarm_location(self.conn, terminal, request),
            "masked_pan": masked_pan,
            "account": account,
            "amount_requested": amount,
        }
        outbox.enqueue(self.conn, "alarm", payload, ALARM_CENTER, clock=self.clock)
        self.raised += 1
        self.opened, self.opened_ref = alarm_id, evidence_ref
        log.info("incident %s queued for the alarm center", alarm_id)  # no word at the terminal
        return alarm_id
