"""The host's SQLite database: one file, WAL, every commit durable.

The schema is planned for every bank behaviour the project carries (see
``docs/host-data-model.md``); tables arrive as the behaviours do. Storage goes through
this module and :mod:`sim.host.ledger` only, so another SQL engine stays possible.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from atm_common.files import private_database
from sim.host import storage
from sim.host.ledger import transaction
from sim.host.storage.pg import SQLITE_MASTER

SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,                -- account number, or GL-... for the bank's own
    kind TEXT NOT NULL CHECK (kind IN ('customer', 'gl')),
    normal TEXT NOT NULL CHECK (normal IN ('credit', 'debit')),
    currency TEXT NOT NULL,
    debits_posted INTEGER NOT NULL DEFAULT 0,
    credits_posted INTEGER NOT NULL DEFAULT 0,
    debits_pending INTEGER NOT NULL DEFAULT 0,
    credits_pending INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    safety_amount INTEGER
);
CREATE TABLE IF NOT EXISTS ownership (
    person_id TEXT NOT NULL REFERENCES persons(id),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (person_id, account_id)
);
CREATE TABLE IF NOT EXISTS cards (
    pan_ref TEXT PRIMARY KEY,           -- keyed hash of the PAN: no PAN at rest
    pan_masked TEXT NOT NULL,           -- first 6 / last 4, for people
    person_id TEXT NOT NULL REFERENCES persons(id),
    expiry TEXT NOT NULL,               -- YYMM
    product TEXT NOT NULL DEFAULT 'debit',
    pin_offset TEXT NOT NULL,           -- IBM 3624 offset, never a PIN
    duress_offset TEXT,                 -- offset of the personal-safety PIN, if enrolled
    pin_tries INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retained', 'blocked')),
    daily_limit INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS card_accounts (
    pan_ref TEXT NOT NULL REFERENCES cards(pan_ref),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    is_default INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pan_ref, account_id)
);
CREATE TABLE IF NOT EXISTS terminals (
    id TEXT PRIMARY KEY,
    cash_account TEXT NOT NULL REFERENCES accounts(id),
    site_name TEXT NOT NULL DEFAULT '',
    site_lat REAL,
    site_lon REAL,
    status TEXT NOT NULL DEFAULT 'unknown',  -- in_service once heard from, signed_off
    last_seen TEXT,
    cash_on_hand INTEGER                -- estimate: the GL-CASH-<id> balance when last heard
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    debit_account TEXT NOT NULL REFERENCES accounts(id),
    credit_account TEXT NOT NULL REFERENCES accounts(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    status TEXT NOT NULL CHECK (status IN ('posted', 'pending', 'voided')),
    kind TEXT NOT NULL,                 -- opening, withdrawal, reversal, fee, hold ...
    pending_id INTEGER REFERENCES transfers(id),  -- the hold this posts or voids
    reverses_id INTEGER REFERENCES transfers(id), -- the transfer this one reverses
    pan_ref TEXT,
    terminal_id TEXT,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_card_day
    ON transfers (pan_ref, business_date, status, kind, amount);  -- covers the daily-limit sum
CREATE INDEX IF NOT EXISTS transfers_reverses
    ON transfers (reverses_id, status, amount);  -- "already reversed?" and today's reversals
CREATE TABLE IF NOT EXISTS reversed_in_advance (  -- reversals that overtook their original
    terminal_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    PRIMARY KEY (terminal_id, stan, transmission_time)
);
CREATE TABLE IF NOT EXISTS network_requests (  -- 0800s accepted, so a replay is refused
    terminal_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    code TEXT NOT NULL,                 -- field 70
    received_at REAL NOT NULL,          -- host clock, epoch seconds: old rows are pruned
    PRIMARY KEY (terminal_id, stan, transmission_time, code)
);
CREATE INDEX IF NOT EXISTS network_requests_received
    ON network_requests (received_at);  -- the pruning of old rows on every 0800
CREATE TABLE IF NOT EXISTS requests (
    terminal_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    mti TEXT NOT NULL,
    digest TEXT NOT NULL,               -- of the request, to tell a repeat from a replay
    response TEXT NOT NULL,             -- the original response, JSON
    transfer_id INTEGER REFERENCES transfers(id),
    received_at TEXT NOT NULL,
    PRIMARY KEY (terminal_id, stan, transmission_time)
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the host database in WAL mode with durable commits.

    The file is made 0600 (its directory 0700 if created) before SQLite opens it, and
    SQLite gives its -wal and -shm the database's mode: card references, PIN offsets and
    wrapped working keys are nobody else's to read, whoever embeds the host.

    ``path`` may also be a ``postgresql://`` URL (:mod:`sim.host.storage`): the same
    schema is created there, under the host's write lock so that several host processes
    starting together create it once.
    """
    if storage.is_postgres(path):
        conn = storage.connect_raw(path)
        with transaction(conn):
            conn.executescript(SCHEMA)
            (views,) = conn.execute(
                "SELECT COUNT(*) FROM pg_views WHERE viewname = 'sqlite_master'"
                " AND schemaname = current_schema()"
            ).fetchone()
            if not views:
                conn.execute(SQLITE_MASTER)
            _migrate(conn)
        return conn
    private_database(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    # a server's working set: the indexes of a long history stay in memory (the default
    # cache is 2 MB), and pages are read through a memory map rather than read() calls
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    conn.executescript(SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added after a database file may have been created (cardless routing)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(terminals)")}
    if "cash_on_hand" not in columns:
        conn.execute("ALTER TABLE terminals ADD COLUMN cash_on_hand INTEGER")


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only view of a host database another process is serving (reports, demo)."""
    if storage.is_postgres(path):
        conn = storage.connect_raw(path)
        conn.execute("SET default_transaction_read_only = on")
        return conn
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn
