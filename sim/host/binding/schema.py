"""The bank's tables for binding accounts to a payment app.

``binding_sessions``: one per customer request (at the ATM or in the bank app), from
``requested`` (the address request waits in the outbox) to ``address`` (the payment
server gave one), then ``bound``, ``failed`` or ``expired``. ``payapp_bindings``: the
bindings the payment server reported and the bank accepted, ``active`` or ``revoked``.
No secret is kept: the address is single-use and expires with the session, and the app
user is kept masked. Portable SQL (SQLite and PostgreSQL): TEXT/INTEGER/REAL only.
"""

from __future__ import annotations

import sqlite3

from sim.host.ledger import transaction

SESSION_STATUSES = ("requested", "address", "bound", "failed", "expired")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS binding_sessions (
        id TEXT PRIMARY KEY,                 -- unguessable; also the payment server's key
        person_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        path TEXT NOT NULL CHECK (path IN ('atm_qr', 'app_qr', 'push')),
        app_user TEXT,                       -- push: whom to push to (as the customer typed)
        terminal_id TEXT,                    -- atm_qr: where it was asked
        status TEXT NOT NULL CHECK (status IN
            ('requested', 'address', 'bound', 'failed', 'expired')),
        address TEXT,
        reason TEXT,
        binding_id TEXT,
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL             -- epoch seconds; the address dies with it
    )""",
    "CREATE INDEX IF NOT EXISTS binding_sessions_person ON binding_sessions (person_id)",
    """CREATE TABLE IF NOT EXISTS payapp_bindings (
        id TEXT PRIMARY KEY,                 -- the payment server's binding id
        session_id TEXT NOT NULL UNIQUE,
        person_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        app_user TEXT NOT NULL,              -- masked
        path TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        revoked_by TEXT,
        created_at TEXT NOT NULL
    )""",
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing (statement by statement, in one transaction)."""
    with transaction(conn):
        for statement in SCHEMA:
            conn.execute(statement)
