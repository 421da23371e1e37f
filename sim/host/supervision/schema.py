"""The supervision tables and GL accounts, created at host start (portable SQL only).

- ``terminal_modes``: what each terminal last said it was doing (in service, supervisor,
  exchange, out of service), the cash it reported, and when.
- ``terminal_devices``: its device status list, one row per device kind, replaced on every
  status message, so an attention clears when the terminal says the device recovered.
- ``cash_exchanges``: every replenishment with its balancing figures; a difference is a
  row here and a posting to :data:`DIFFERENCE_ACCOUNT`, never absorbed.
- ``open_exchanges``: the exchange id each terminal was handed at its last 0800/181, until
  its 0800/182 books it (then the id is a ``cash_exchanges`` row, and a resend of that 182
  is answered from it, booking nothing).
- ``supervision_events``: the host's journal of supervisor entries, exits and exchanges,
  and of every supervisor card entry attempt (PAN masked, never anything of the PIN).
- ``supervisor_cards``: the staff cards that open supervisor mode, each with its role and
  its own PIN (an IBM 3624 offset, as customers' cards), wrong tries and status
  (:mod:`sim.host.supervision.cards`).
"""

from __future__ import annotations

import sqlite3

from sim.host.ledger import transaction

VAULT_ACCOUNT = "GL-VAULT"  # the branch vault the cassettes are filled from and emptied to
DIFFERENCE_ACCOUNT = "GL-DIFF-CASH"  # cash shortages and overages found at balancing

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS terminal_modes (
        terminal_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        reported_cash INTEGER,
        supervisor TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS terminal_devices (
        terminal_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        attention TEXT NOT NULL,
        actor TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (terminal_id, kind)
    )""",
    """CREATE TABLE IF NOT EXISTS cash_exchanges (
        id TEXT PRIMARY KEY,
        terminal_id TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        host_expected INTEGER NOT NULL,
        found INTEGER NOT NULL,
        difference INTEGER NOT NULL,
        loaded INTEGER NOT NULL,
        counts TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS open_exchanges (
        terminal_id TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        opened_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS supervision_events (
        id TEXT PRIMARY KEY,
        terminal_id TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS supervisor_cards (
        pan_ref TEXT PRIMARY KEY,
        pan_masked TEXT NOT NULL,
        expiry TEXT NOT NULL,
        role TEXT NOT NULL,
        pin_offset TEXT NOT NULL,
        pin_tries INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'active'
    )""",
)


def ensure_schema(conn: sqlite3.Connection, currency: str) -> None:
    """Create what is missing (inside the caller's transaction when there is one)."""
    if conn.in_transaction:
        _create(conn, currency)
        return
    with transaction(conn):
        _create(conn, currency)


def _create(conn: sqlite3.Connection, currency: str) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    for account in (VAULT_ACCOUNT, DIFFERENCE_ACCOUNT):
        conn.execute(
            "INSERT INTO accounts (id, kind, normal, currency) VALUES (?, 'gl', 'debit', ?)"
            " ON CONFLICT (id) DO NOTHING",
            (account, currency),
        )
