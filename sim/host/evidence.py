"""Snapshots a terminal sends for a silent alarm: reassembled, then attached to the alarm.

The parts arrive in 0620 advices (see :mod:`host_link.evidence`); each is stored as it
comes, inside the advice's own transaction, so a terminal repeating an advice or a host
restarting mid-way loses nothing and duplicates nothing. When a snapshot's last part is
in, the whole JPEG goes to the alarm center as a follow-up of the alarm, through the
durable outbox like the alarm itself. Parts for an alarm this terminal did not raise are
refused (a terminal cannot attach pictures to another terminal's incident).

The advices carry the incident's evidence reference (``REF=``), not its alarm id: the
host looks the alarm up here, so the alarm id never crosses the terminal's wire (see
:mod:`sim.host.duress`). Each part arrives sealed under the terminal's advice data key
(:mod:`atm_common.crypto.data`) and is opened here.

Decoys: the host also asks for snapshots in a sample of normal sessions
(``evidence_sample``), under a reference it records in ``evidence_decoys``, so that on the
wire a duress session's uploads look like anyone's. Their parts are answered exactly like
real ones (00) and dropped unread: no picture of a normal customer is kept.
"""

from __future__ import annotations

import base64
import logging
import sqlite3

from atm_common.clock import Clock
from host_link.codec import Message
from host_link.errors import CodecError
from host_link.evidence import PART_CHARS, decode_sealed, parse_part
from sim.host import outbox
from sim.host.duress import ALARM_CENTER, new_id
from sim.host.keys import KeyStore

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_parts (
    ref TEXT NOT NULL,
    snapshot INTEGER NOT NULL,
    part INTEGER NOT NULL,
    total INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (ref, snapshot, part)
);
CREATE TABLE IF NOT EXISTS evidence_decoys (
    ref TEXT PRIMARY KEY,           -- random, like a real evidence reference
    terminal_id TEXT NOT NULL,
    issued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_decoys_issued
    ON evidence_decoys (issued_at);  -- the pruning of old decoys on every issue
"""
DECOY_KEEP = 7 * 86_400.0  # seconds a decoy reference is honoured (parts may come late)


class EvidenceDesk:
    def __init__(self, conn: sqlite3.Connection, clock: Clock, keys: KeyStore) -> None:
        self.conn, self.clock, self.keys = conn, clock, keys
        conn.executescript(SCHEMA)

    def issue_decoy(self, terminal_id: str) -> str:
        """A decoy evidence reference for a normal session (inside the caller's transaction)."""
        now = self.clock.now().timestamp()
        self.conn.execute("DELETE FROM evidence_decoys WHERE issued_at < ?", (now - DECOY_KEEP,))
        ref = new_id("evr")
        self.conn.execute("INSERT INTO evidence_decoys VALUES (?,?,?)", (ref, terminal_id, now))
        return ref

    def receive(self, request: Message) -> str:
        """Store one part (inside the caller's transaction); returns a response code."""
        try:
            sealed = decode_sealed(request.get("63", ""), PART_CHARS)
            part = parse_part(self.keys.decrypt_advice_data(request, sealed))
        except (CodecError, ValueError) as exc:
            log.warning("evidence advice refused: %s", exc)
            return "30"
        terminal = request.get("41")
        owner = self.conn.execute(
            "SELECT terminal_id, alarm_id FROM duress_alarms WHERE evidence_ref = ?", (part.ref,)
        ).fetchone()
        if owner is None:
            decoy = self.conn.execute(
                "SELECT terminal_id FROM evidence_decoys WHERE ref = ?", (part.ref,)
            ).fetchone()
            if decoy is not None and decoy[0] == terminal:
                return "00"  # a sampled normal session's snapshot: dropped unread
        if owner is None or owner[0] != terminal:
            log.warning("evidence for an incident this terminal did not raise: refused")
            return "12"
        self.conn.execute(
            "INSERT OR IGNORE INTO evidence_parts VALUES (?,?,?,?,?)",
            (
                part.ref,
                part.snapshot,
                part.part,
                part.total,
                base64.b64encode(part.data).decode("ascii"),
            ),
        )
        rows = self.conn.execute(
            "SELECT data FROM evidence_parts WHERE ref = ? AND snapshot = ? AND total = ?"
            " ORDER BY part",
            (part.ref, part.snapshot, part.total),
        ).fetchall()
        if len(rows) == part.total:
            jpeg = base64.b64decode("".join(r[0] for r in rows))
            update = {
                "alarm_id": owner[1],
                "update": True,
                "update_id": f"{owner[1]}-snapshot-{part.snapshot}",
                "time": self.clock.now().isoformat(),
                "evidence": [
                    {
                        "content_type": "image/jpeg",
                        "data_base64": base64.b64encode(jpeg).decode("ascii"),
                    }
                ],
            }
            outbox.enqueue(self.conn, "alarm", update, ALARM_CENTER, clock=self.clock)
            log.info("snapshot %d of %s complete (%d bytes)", part.snapshot, part.ref, len(jpeg))
        return "00"
