"""``atm journal search``: find entries by session, card, time range and event kind.

Why a search and not only a tail: a dispute ("the machine kept my money on Tuesday")
starts from a card and a day, a balancing difference from an exchange and its session.
The card is matched as the journal stores it, masked first 6 / last 4: a full PAN typed
by the operator is masked first, so the search never needs, nor shows, the clear PAN. It
finds the sessions that read the card and the rows outside a session that name it (a
supervisor card's entries).
Read-only: another process may be writing the journal.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from atm_common.masking import mask_pan
from terminal.errors import JournalError
from terminal.journal import Entry


def search(
    path: Path,
    *,
    session: str | None = None,
    card: str | None = None,
    since: str | None = None,
    until: str | None = None,
    event: str | None = None,
    limit: int = 200,
) -> list[Entry]:
    """Entries matching every filter given, oldest first. ``event`` ending in ``*`` is a
    prefix (``supervisor_*``); ``since``/``until`` are ISO times compared as text."""
    if not path.exists():
        raise JournalError(f"{path}: no journal here (--config FILE or --journal FILE)")
    where, args = ["1 = 1"], []
    if session:
        where.append("session = ?")
        args.append(session)
    if since:
        where.append("time >= ?")
        args.append(since)
    if until:
        where.append("time <= ?")
        args.append(until)
    if event:
        if event.endswith("*"):
            where.append("substr(event, 1, ?) = ?")
            args += [str(len(event) - 1), event[:-1]]
        else:
            where.append("event = ?")
            args.append(event)
    masked = None
    if card:
        digits = card.replace(" ", "")
        masked = digits if "*" in digits else mask_pan(digits)
        # the card appears in the session that read it: those sessions; and the rows that
        # name it outside any session (a supervisor card's supervisor_enter/_refused)
        where.append("(session IN (SELECT session FROM journal WHERE data LIKE ?) OR data LIKE ?)")
        args += [f"%{masked}%", f"%{masked}%"]
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT * FROM journal WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (*args, limit),
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a journal ({exc})") from exc
    finally:
        conn.close()
    return [Entry(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
