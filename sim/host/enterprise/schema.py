"""The enterprise tables and the bank-side journal of every enterprise request.

Companies, their users (a person of the bank with a login password), the fund accounts
bound to each company, the permission policy (pycasbin's rule rows, read and written by
:mod:`.adapter`) with a version counter every host process watches, sessions (only a
hash of each token), the maker-checker queue of table changes, and payouts waiting for
approval. Portable SQL (SQLite and PostgreSQL): no AUTOINCREMENT, no engine functions.
No secret is ever stored: passwords as scrypt hashes, tokens as SHA-256 digests.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from typing import Any

from atm_common.clock import Clock
from sim.host.ledger import transaction

log = logging.getLogger(__name__)

ROLES = ("asset_manager", "trustee", "settlor", "beneficiary", "outsourced_manager")
OPERATIONS = ("balance", "statement", "transfer", "payout", "approve", "withdraw")
PAYOUT_ACCOUNT = "GL-ENT-PAYOUTS"  # external clearing: where approved payouts leave the bank

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ent_companies (
        id TEXT PRIMARY KEY,                -- the company's online banking account
        name TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ent_users (
        id TEXT PRIMARY KEY REFERENCES persons(id),
        company_id TEXT NOT NULL REFERENCES ent_companies(id),
        password TEXT NOT NULL              -- scrypt$n$r$p$salt$hash (base64), never the password
    )""",
    """CREATE TABLE IF NOT EXISTS ent_fund_accounts (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        company_id TEXT NOT NULL REFERENCES ent_companies(id),
        label TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ent_admins (
        id TEXT PRIMARY KEY,                -- a bank administrator of the tables
        name TEXT NOT NULL,
        password TEXT NOT NULL
    )""",
    # pycasbin's rules: p = role, company:department, account, operation;
    # g = user, role, company:department (the roles a user really holds)
    """CREATE TABLE IF NOT EXISTS ent_policy (
        ptype TEXT NOT NULL,
        v0 TEXT NOT NULL DEFAULT '',
        v1 TEXT NOT NULL DEFAULT '',
        v2 TEXT NOT NULL DEFAULT '',
        v3 TEXT NOT NULL DEFAULT '',
        v4 TEXT NOT NULL DEFAULT '',
        v5 TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (ptype, v0, v1, v2, v3, v4, v5)
    )""",
    "CREATE INDEX IF NOT EXISTS ent_policy_domain ON ent_policy (ptype, v1)",
    # bumped with every change of the policy: each host process reloads when it moves
    """CREATE TABLE IF NOT EXISTS ent_policy_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ent_sessions (
        token_hash TEXT PRIMARY KEY,        -- SHA-256 of the bearer token
        kind TEXT NOT NULL CHECK (kind IN ('user', 'admin')),
        subject TEXT NOT NULL,              -- user or admin id
        company_id TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL DEFAULT '',
        department TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL            -- epoch seconds
    )""",
    "CREATE INDEX IF NOT EXISTS ent_sessions_expiry ON ent_sessions (expires_at)",
    """CREATE TABLE IF NOT EXISTS ent_changes (
        id TEXT PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES ent_companies(id),
        role TEXT NOT NULL,
        department TEXT NOT NULL,
        operations TEXT NOT NULL,           -- JSON list: the entry's new operations
        accounts TEXT NOT NULL,             -- JSON list: its new fund accounts
        maker TEXT NOT NULL,
        checker TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
        created_at TEXT NOT NULL,
        decided_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS ent_payouts (
        id TEXT PRIMARY KEY,
        company_id TEXT NOT NULL REFERENCES ent_companies(id),
        account_id TEXT NOT NULL REFERENCES accounts(id),
        beneficiary TEXT NOT NULL,          -- the external account paid
        amount INTEGER NOT NULL CHECK (amount > 0),
        hold_transfer_id INTEGER NOT NULL REFERENCES transfers(id),
        maker TEXT NOT NULL,
        approver TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'paid')),
        created_at TEXT NOT NULL,
        decided_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS ent_events (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        channel TEXT NOT NULL,              -- api, atm or admin
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
        subject TEXT NOT NULL DEFAULT '',   -- who (as claimed: a refusal may name anyone)
        company_id TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL                -- JSON; never a password or token
    )""",
    "CREATE INDEX IF NOT EXISTS ent_events_at ON ent_events (at)",
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing (inside the caller's transaction when there is one)."""
    if conn.in_transaction:
        for statement in SCHEMA:
            conn.execute(statement)
    else:
        with transaction(conn):
            for statement in SCHEMA:
                conn.execute(statement)


def record_event(
    conn: sqlite3.Connection,
    clock: Clock,
    channel: str,
    kind: str,
    outcome: str,
    *,
    subject: str = "",
    company: str = "",
    **detail: Any,
) -> None:
    """One journal line (in the caller's transaction, or its own if there is none)."""
    row = (
        secrets.token_hex(10),
        clock.now().isoformat(),
        channel,
        kind,
        outcome,
        subject,
        company,
        json.dumps(detail, sort_keys=True),
    )
    if conn.in_transaction:
        conn.execute("INSERT INTO ent_events VALUES (?,?,?,?,?,?,?,?)", row)
    else:
        with transaction(conn):
            conn.execute("INSERT INTO ent_events VALUES (?,?,?,?,?,?,?,?)", row)
    log.info("enterprise %s %s %s: %s %s %s", channel, kind, outcome, subject, company, detail)
