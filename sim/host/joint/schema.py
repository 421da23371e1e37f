"""The joint-account tables; created at host start (and inside the seed loader's
transaction), like the cardless ones. No column holds a secret: the account password
and each co-owner's code only as IBM 3624 offsets (PIN verification data), a co-owner's
app token and identity number only as HMACs under the host's ``pan_key``."""

from __future__ import annotations

import sqlite3

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS joint_accounts (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        account_type TEXT NOT NULL,         -- core banking's points rule is chosen by it
        password_offset TEXT NOT NULL,      -- IBM 3624 offset against the account number
        failures INTEGER NOT NULL DEFAULT 0,
        locked_at TEXT                      -- set when the failures passed the threshold
    )""",
    """CREATE TABLE IF NOT EXISTS joint_owners (
        account_id TEXT NOT NULL REFERENCES joint_accounts(account_id),
        person_id TEXT NOT NULL REFERENCES persons(id),
        code_offset TEXT NOT NULL,          -- the co-owner's own code, IBM 3624 offset
        bound_at TEXT NOT NULL,
        PRIMARY KEY (account_id, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS joint_people (
        person_id TEXT PRIMARY KEY REFERENCES persons(id),
        token_hash TEXT NOT NULL UNIQUE,    -- HMAC of the phone app's bearer token
        identity_hash TEXT NOT NULL         -- HMAC of the identity document number
    )""",
    """CREATE TABLE IF NOT EXISTS joint_approvals (
        id TEXT PRIMARY KEY,                -- 80 random bits, hex: the reference
        account_id TEXT NOT NULL REFERENCES joint_accounts(account_id),
        requester TEXT NOT NULL REFERENCES persons(id),
        kind TEXT NOT NULL CHECK (kind IN ('withdrawal', 'balance', 'transfer', 'bind',
            'cardless')),                   -- cardless: target is the quote id
        amount INTEGER NOT NULL,
        terminal_id TEXT,                   -- the ATM it is bound to (none on the phone)
        target TEXT,                        -- transfer: credit account; bind: candidate
        target_offset TEXT,                 -- bind: the candidate's code, IBM 3624 offset
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected',
            'expired', 'cancelled', 'used')),
        decided_by TEXT,
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL,           -- epoch seconds
        decided_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS joint_approvals_account ON joint_approvals (account_id, status)",
    """CREATE TABLE IF NOT EXISTS joint_votes (  -- binding: every co-owner's authorisation
        approval_id TEXT NOT NULL REFERENCES joint_approvals(id),
        person_id TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
        at TEXT NOT NULL,
        PRIMARY KEY (approval_id, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS joint_polls (  -- the ATM requests answered 09 for one
        terminal_id TEXT NOT NULL,
        stan TEXT NOT NULL,
        transmission_time TEXT NOT NULL,
        approval_id TEXT NOT NULL REFERENCES joint_approvals(id),
        PRIMARY KEY (terminal_id, stan, transmission_time)
    )""",
    """CREATE TABLE IF NOT EXISTS joint_points (  -- core banking's running total
        account_id TEXT PRIMARY KEY REFERENCES joint_accounts(account_id),
        points INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS joint_bills (  -- one per finished operation
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        approval_id TEXT,
        operation TEXT NOT NULL,
        amount INTEGER NOT NULL,
        place TEXT NOT NULL,
        at TEXT NOT NULL,
        points INTEGER NOT NULL,            -- earned by this operation
        total_points INTEGER NOT NULL
    )""",
)
_NAMES = (
    "joint_accounts",
    "joint_owners",
    "joint_people",
    "joint_approvals",
    "joint_votes",
    "joint_polls",
    "joint_points",
    "joint_bills",
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, statement by statement (inside the caller's transaction
    when there is one: executescript would commit it)."""
    marks = ",".join("?" * len(_NAMES))
    (found,) = conn.execute(
        f"SELECT COUNT(*) FROM sqlite_master WHERE name IN ({marks})", _NAMES
    ).fetchone()
    if found == len(_NAMES):
        return
    for statement in SCHEMA:
        conn.execute(statement)
