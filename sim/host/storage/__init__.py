"""Where the host's ledger lives: an SQLite file (the embedded default) or PostgreSQL.

The host's code is written once, against the surface of :class:`sqlite3.Connection` it
uses: ``execute(sql, params)`` with ``?`` placeholders, rows addressable by name and by
index, ``sqlite3.Error`` subclasses on failure, and :func:`sim.host.ledger.transaction`
as the one way to open a transaction. :func:`connect` hands out such a connection for
either engine: for a ``postgresql://`` URL it is a :class:`~sim.host.storage.pg.PgConnection`,
which translates the few dialect differences in one place (placeholders, DDL types,
``INSERT OR IGNORE``, the pragmas the migrations read, error classes). Code that
follows the portable style (``?``, ``ON CONFLICT``, ``RETURNING``, ``TEXT``/``INTEGER``/
``REAL``) therefore runs on both engines unedited.

The PostgreSQL connection is typed as :class:`sqlite3.Connection` on purpose: it is
what the rest of the host is annotated with, and the adapter provides the part of that
surface the host uses (tests run the host suite on both engines to hold it to that).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import cast

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    """True for a PostgreSQL URL (``postgresql://user@/db?host=/socket/dir&port=5433``)."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def redact(target: str | Path) -> str:
    """``target`` fit for a log line: a URL's password is replaced by ``***``."""
    text = str(target)
    if not is_postgres(text):
        return text
    parts = urllib.parse.urlsplit(text)
    if parts.password is None:
        return text
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def connect_raw(target: str | Path) -> sqlite3.Connection:
    """An autocommit connection to the host's database, without creating any schema
    (a second connection of the same process: the outbox worker's, a report's)."""
    if is_postgres(target):
        from sim.host.storage.pg import PgConnection

        return cast(sqlite3.Connection, PgConnection.open(str(target)))
    conn = sqlite3.connect(str(target), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn
