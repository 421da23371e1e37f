"""The bank's back office for joint accounts: unlocking one (``atm joint-unlock``).

Run against the host's database file, also while the host serves it (SQLite WAL; one
short write transaction). Unlocking is the bank's alone: see docs/joint-accounts.md.
"""

from __future__ import annotations

from pathlib import Path

from atm_common.clock import SystemClock
from atm_common.errors import ConfigError, UsageError
from sim.host import db, storage
from sim.host.joint.book import JointBook
from sim.host.joint.schema import ensure_schema
from sim.host.ledger import transaction
from sim.host.settings import HostSettings

__all__ = ["unlock"]


def unlock(db_path: Path | str, account: str) -> str:
    """Unlock ``account`` and tell its co-owners; what was done, in words.

    ``db_path``: the host's SQLite file, or its PostgreSQL URL (``atm host --db``)."""
    if not storage.is_postgres(db_path) and not Path(db_path).is_file():
        raise ConfigError(str(db_path), "", "no host database there")  # exit 3
    conn = db.connect(db_path)
    try:
        ensure_schema(conn)
        book = JointBook(conn, HostSettings(), SystemClock())
        with transaction(conn):
            if book.account(account) is None:
                # the account named on the command line is not one to unlock: exit 2
                raise UsageError(f"{account} is not a joint account")
            if not book.unlock(account):
                raise UsageError(f"joint account {account} is not locked")
    finally:
        conn.close()
    return f"joint account {account} unlocked; its co-owners are told"
