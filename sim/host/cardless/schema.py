"""The cardless tables, the two GL accounts, and the bank-side journal of a withdrawal.

Every other cardless module reads and writes these tables; this one only creates them
(also inside the seed loader's transaction) and appends to the journal. A step and its
journal line run in the caller's transaction, so they commit together. The columns keep
no secret: a reservation code only as its IBM 3624 offset, an SMS code only as an HMAC,
a face only as its template, and no event ever holds any of them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from atm_common.clock import Clock
from sim.host.cardless.tokens import fingerprint, redact
from sim.host.ledger import transaction

log = logging.getLogger(__name__)

CLEARING_ACCOUNT = "GL-CARDLESS"  # holds credit this until the cash is out
FEE_ACCOUNT = "GL-FEES-CARDLESS"  # fee income
HOLD_KIND = "cardless"
STATUSES = ("active", "used", "cancelled", "expired", "refunded")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS face_templates (
        person_id TEXT PRIMARY KEY REFERENCES persons(id),
        template TEXT NOT NULL,             -- FaceTemplate.to_text(): never the photo
        source TEXT NOT NULL,               -- where it came from (file name), for people
        enrolled_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cardless_requests (
        id TEXT PRIMARY KEY,                -- unguessable: the phone session's handle
        person_id TEXT NOT NULL REFERENCES persons(id),
        phone TEXT NOT NULL,                -- digits only
        code_hash TEXT NOT NULL,            -- HMAC of the SMS code, never the code
        code_attempts INTEGER NOT NULL DEFAULT 0,
        face_attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN
            ('sent', 'verified', 'identified', 'reserved', 'failed')),
        consent_at TEXT,
        face_distance REAL,
        reservation_id TEXT,
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL            -- epoch seconds
    )""",
    # A request for a number no customer has (or several share) gets a session too, kept
    # here: the answer and what follows look the same whether the number banks here or not.
    """CREATE TABLE IF NOT EXISTS cardless_decoys (
        id TEXT PRIMARY KEY,                -- looks like any request id
        phone TEXT NOT NULL,                -- digits only
        code_attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL            -- epoch seconds
    )""",
    # Consecutive failed cardless checks per phone number (SMS codes, ATM checks), known
    # or not; a row at the limit is a lockout until the bank deletes it (throttle.py).
    """CREATE TABLE IF NOT EXISTS cardless_phone_guard (
        phone TEXT PRIMARY KEY,             -- digits only
        failures INTEGER NOT NULL,
        last_failure TEXT NOT NULL,
        locked_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS cardless_quotes (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES cardless_requests(id),
        account_id TEXT NOT NULL REFERENCES accounts(id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        fee INTEGER NOT NULL CHECK (fee >= 0),
        currency TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('code', 'face', 'both')),
        product TEXT NOT NULL,
        created_at TEXT NOT NULL,
        hold_minutes REAL                   -- the customer's collection window, if shorter
    )""",
    """CREATE TABLE IF NOT EXISTS reservations (
        id TEXT PRIMARY KEY,
        request_id TEXT REFERENCES cardless_requests(id),
        person_id TEXT NOT NULL REFERENCES persons(id),
        phone TEXT NOT NULL,                -- digits: how the ATM finds the reservation
        account_id TEXT NOT NULL REFERENCES accounts(id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        fee INTEGER NOT NULL CHECK (fee >= 0),
        currency TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('code', 'face', 'both')),
        code_offset TEXT,                   -- IBM 3624 offset of the code, never the code
        hold_transfer_id INTEGER NOT NULL REFERENCES transfers(id),
        status TEXT NOT NULL CHECK (status IN
            ('active', 'used', 'cancelled', 'expired', 'refunded')),
        attempts INTEGER NOT NULL DEFAULT 0,  -- failed checks at ATMs
        verified_terminal TEXT,             -- the last ATM whose 0100 passed the checks
        verified_at REAL,
        terminal_id TEXT,                   -- where the cash came out
        refunded INTEGER NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL,           -- epoch seconds
        created_at TEXT NOT NULL,
        closed_at TEXT
    )""",
    # One active reservation per phone: the ATM finds it by the phone number alone.
    "CREATE UNIQUE INDEX IF NOT EXISTS reservations_one_active"
    " ON reservations (phone) WHERE status = 'active'",
    "CREATE INDEX IF NOT EXISTS reservations_due ON reservations (status, expires_at)",
    # The ATM's answer for a phone without an active reservation: its latest one.
    "CREATE INDEX IF NOT EXISTS reservations_phone ON reservations (phone, expires_at)",
    """CREATE TABLE IF NOT EXISTS reservation_transfers (
        transfer_id INTEGER PRIMARY KEY REFERENCES transfers(id),
        reservation_id TEXT NOT NULL REFERENCES reservations(id),
        role TEXT NOT NULL CHECK (role IN ('hold', 'posting', 'cash', 'fee', 'refund'))
    )""",
    # A reversal finds the transfers of its reservation.
    "CREATE INDEX IF NOT EXISTS reservation_transfers_reservation"
    " ON reservation_transfers (reservation_id)",
    """CREATE TABLE IF NOT EXISTS cardless_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        person_id TEXT,
        request_id TEXT,
        reservation_id TEXT,
        terminal_id TEXT,
        detail TEXT NOT NULL                -- JSON; never a code, template or photo
    )""",
    "CREATE INDEX IF NOT EXISTS cardless_events_reservation"
    " ON cardless_events (reservation_id, id)",
    # ATM routing counts each terminal's recent sessions.
    "CREATE INDEX IF NOT EXISTS requests_terminal_time ON requests (terminal_id, received_at)",
)


_SCHEMA_NAMES = tuple(statement.split(" IF NOT EXISTS ")[1].split()[0] for statement in SCHEMA)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, in one transaction (every autocommit statement would be
    a durable commit of its own), inside the caller's when there is one: statement by
    statement, since executescript would COMMIT it (the seed loader calls this in one)."""
    marks = ",".join("?" * len(_SCHEMA_NAMES))
    (found,) = conn.execute(
        f"SELECT COUNT(*) FROM sqlite_master WHERE name IN ({marks})", _SCHEMA_NAMES
    ).fetchone()
    if found == len(_SCHEMA_NAMES):
        return
    if conn.in_transaction:
        for statement in SCHEMA:
            conn.execute(statement)
        return
    with transaction(conn):
        for statement in SCHEMA:
            conn.execute(statement)


# -- the journal and the GL accounts (inside the caller's transaction) ----------------


def record_event(
    conn: sqlite3.Connection,
    clock: Clock,
    kind: str,
    *,
    person_id: str | None = None,
    request_id: str | None = None,
    reservation_id: str | None = None,
    terminal_id: str | None = None,
    **detail: Any,
) -> None:
    """One line of the bank-side journal of a cardless withdrawal (inside the caller's
    transaction, so a step and its record commit together)."""
    conn.execute(
        "INSERT INTO cardless_events (at, kind, person_id, request_id, reservation_id,"
        " terminal_id, detail) VALUES (?,?,?,?,?,?,?)",
        (
            clock.now().isoformat(),
            kind,
            person_id,
            request_id,
            reservation_id,
            terminal_id,
            json.dumps(detail, sort_keys=True),
        ),
    )
    # the ids are bearer credentials: the log gets their fingerprints (tokens.py)
    who = fingerprint(reservation_id or request_id) if (reservation_id or request_id) else person_id
    log.info("cardless %s: %s %s", kind, who, redact(str(detail)))


def ensure_accounts(conn: sqlite3.Connection, currency: str) -> None:
    """The clearing and fee-income accounts (credit-normal, like every liability and
    income); created on first use so databases seeded before cardless existed work too."""
    for account in (CLEARING_ACCOUNT, FEE_ACCOUNT):
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id, kind, normal, currency) VALUES (?,?,?,?)",
            (account, "gl", "credit", currency),
        )
