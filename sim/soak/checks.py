"""The soak's verdict: after the run, does every unit of money and every alarm add up?

These checks read only what the run left on disk (the host's database, the alarm
center's store) and the dispenser's own counters, never the harness's idea of what
happened, so a bug in the session loop cannot hide a bug in the money. Each returns a
list of problems in words; an empty list is a clean run. They are kept apart from the
loop (:mod:`sim.soak.harness`) so the invariants can be read, and tightened, on their own:

* per account: opening balance - closing balance - open holds = cash its cards received;
* the terminal's cash account and the cassettes agree with the notes that left them;
* the ledger balances, and nothing was posted twice (``duplicate: ...`` problems);
* every duress alarm the host opened reached the alarm center, its outbox drained.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from atm_common.clock import Clock
from sim.alarm_center import list_alarms
from sim.host import db
from sim.host.ledger import Ledger, balance_of
from sim.scenarios.seedgen import account_number
from terminal.drivers.dispenser.sim import SimDispenser

ALARM_DELIVERY_TIMEOUT = 30.0  # seconds the outbox gets to drain once the center is back


def check_money(
    db_path: Path | str,
    dispenser: SimDispenser,
    dispensed: Mapping[str, int],
    *,
    cards: int,
    opening_balance: int,
    terminal_id: str,
    clock: Clock,
    extra_accounts: Sequence[str] = (),
) -> list[str]:
    """Accounts, the terminal's cash, the cassettes, the ledger, duplicate postings."""
    conn = db.connect_readonly(db_path)
    problems: list[str] = []
    try:
        rows = {row["id"]: row for row in conn.execute("SELECT * FROM accounts")}
        for number in [*(account_number(i) for i in range(cards)), *extra_accounts]:
            row = rows[number]
            closing = balance_of(row).ledger
            holds = row["debits_pending"]
            got = dispensed[number]
            if opening_balance - closing - holds != got:
                problems.append(
                    f"account {number}: opening {opening_balance} - closing {closing}"
                    f" - holds {holds} != dispensed {got}"
                )
        cash = rows[f"GL-CASH-{terminal_id}"]
        opening_cash = conn.execute(
            "SELECT SUM(amount) FROM transfers WHERE kind = 'opening' AND debit_account = ?",
            (f"GL-CASH-{terminal_id}",),
        ).fetchone()[0]
        if opening_cash - balance_of(cash).ledger != dispenser.handed_out_amount:
            problems.append("terminal cash account does not match the cash handed out")
        moved = dispenser.initial_amount - dispenser.cassette_amount
        counted = dispenser.handed_out_amount + dispenser.retracted_amount
        counted += dispenser.rejected_amount + dispenser.stacked_amount
        if moved != counted:
            problems.append(f"cassettes: {moved} left them, {counted} accounted for")
        problems += [f"ledger: {p}" for p in Ledger(conn, clock).check()]
        problems += duplicates(conn)
    finally:
        conn.close()
    return problems


def duplicates(conn: sqlite3.Connection) -> list[str]:
    """Reversals and refunds applied twice, withdrawals not tied to exactly one request."""
    out = []
    twice = conn.execute(
        "SELECT reverses_id FROM transfers WHERE reverses_id IS NOT NULL"
        " GROUP BY reverses_id HAVING COUNT(*) > 1"
    ).fetchall()
    out += [f"duplicate: transfer {r[0]} reversed more than once" for r in twice]
    over = conn.execute(
        "SELECT o.id FROM transfers o JOIN transfers r ON r.reverses_id = o.id"
        " GROUP BY o.id HAVING SUM(r.amount) > MAX(o.amount)"
    ).fetchall()
    out += [f"duplicate: transfer {r[0]} refunded beyond its amount" for r in over]
    unpaired = conn.execute(
        "SELECT t.id FROM transfers t WHERE t.kind = 'withdrawal'"
        " AND (SELECT COUNT(*) FROM requests q WHERE q.transfer_id = t.id) != 1"
    ).fetchall()
    out += [f"duplicate: withdrawal {r[0]} not tied to exactly one request" for r in unpaired]
    return out


async def check_alarms(db_path: Path | str, alarms_db: Path) -> tuple[dict[str, int], list[str]]:
    """With the alarm center up, wait for the host's alarm outbox to drain, then compare.

    Returns the outbox's alarm entries by status and the problems: entries not
    delivered, and incidents the host opened that the center did not store.
    """
    deadline = time.monotonic() + ALARM_DELIVERY_TIMEOUT
    while True:
        conn = db.connect_readonly(db_path)
        try:
            rows = conn.execute(
                "SELECT status, COUNT(*) FROM outbox WHERE kind = 'alarm' GROUP BY status"
            ).fetchall()
        finally:
            conn.close()
        counts = {status: n for status, n in rows}
        if not counts.get("pending") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    lost = [
        f"alarm: {n} outbox entries {status}"
        for status, n in counts.items()
        if status != "delivered"
    ]
    stored = len(list_alarms(alarms_db)) if alarms_db.exists() else 0
    opened = opened_alarms(db_path)
    if stored != opened:
        lost.append(f"alarm: {opened} incidents raised, {stored} at the alarm center")
    return counts, lost


def opened_alarms(db_path: Path | str) -> int:
    """Duress incidents the host opened (one alarm each at the center)."""
    conn = db.connect_readonly(db_path)
    try:
        (n,) = conn.execute("SELECT COUNT(*) FROM duress_alarms").fetchone()
    finally:
        conn.close()
    return int(n)
