"""Group commit (sim/host/group_commit.py): requests handled together commit once, a
failing one rolls back alone, a failed commit approves nothing, and no response leaves
the server before the commit that holds it. On SQLite and PostgreSQL (``host`` fixture).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from host_link.codec import Message
from sim.host import db
from sim.host.group_commit import GroupCommitter
from sim.host.ledger import Ledger
from sim.host.server import HostServer
from tests.host.helpers import (
    ALICE,
    BOB,
    CAROL,
    Host,
    LinkTerminal,
    Terminal,
    open_host,
    seed_with_terminals,
)


def withdrawals(terminal: Terminal) -> list[Message]:
    return [terminal.withdrawal(card, 1_000) for card in (ALICE, BOB, CAROL)]


def test_a_batch_commits_once_and_answers_every_request(host: Host, terminal: Terminal) -> None:
    requests = [*withdrawals(terminal), terminal.echo()]
    before = {c.account: host.balance(c.account) for c in (ALICE, BOB, CAROL)}
    statements: list[str] = []
    if isinstance(host.conn, sqlite3.Connection):  # SQLite tells which statements ran
        host.conn.set_trace_callback(statements.append)
    outcomes = GroupCommitter(host.authoriser).handle([(r, "10.0.0.1") for r in requests])
    if isinstance(host.conn, sqlite3.Connection):
        host.conn.set_trace_callback(None)
        assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
    assert [o["39"] for o in outcomes if isinstance(o, dict)] == ["00"] * 4
    for card in (ALICE, BOB, CAROL):
        assert host.balance(card.account) == before[card.account] - 1_000
    assert host.count("requests") == 3  # stored, so a repeat is answered from the store
    assert not host.conn.in_transaction
    assert host.ledger.check() == []


def test_a_repeat_in_the_same_batch_gets_the_stored_answer(host: Host, terminal: Terminal) -> None:
    request = terminal.withdrawal(ALICE, 2_000)
    before = host.balance(ALICE.account)
    first, again = GroupCommitter(host.authoriser).handle([(request, ""), (dict(request), "")])
    assert first == again and isinstance(first, dict) and first["39"] == "00"
    assert host.balance(ALICE.account) == before - 2_000  # posted once


def test_a_failing_request_rolls_back_alone(
    host: Host, terminal: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's withdrawal fails after its transfer is written: that transfer is undone,
    Bob is answered 96, and Alice's and Carol's commit with the batch."""
    ledger = host.authoriser.ledger
    transfer = Ledger.transfer

    def failing(self: Ledger, debit: str, credit: str, amount: int, **kw: object) -> int:
        posted = transfer(self, debit, credit, amount, **kw)  # type: ignore[arg-type]
        if debit == BOB.account:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return posted

    monkeypatch.setattr(Ledger, "transfer", failing)
    before = {c.account: host.balance(c.account) for c in (ALICE, BOB, CAROL)}
    outcomes = GroupCommitter(host.authoriser).handle([(r, "") for r in withdrawals(terminal)])
    assert [o["39"] for o in outcomes if isinstance(o, dict)] == ["00", "96", "00"]
    assert host.balance(ALICE.account) == before[ALICE.account] - 1_000
    assert host.balance(BOB.account) == before[BOB.account]
    assert host.balance(CAROL.account) == before[CAROL.account] - 1_000
    assert host.count("transfers", "debit_account = ? AND kind = 'withdrawal'", BOB.account) == 0
    assert ledger.check() == []


def test_a_failed_commit_approves_nothing(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT itself fails (a deferred foreign key, SQLite): every request of the batch
    is answered 96 and none of them is durable, so a retry is processed afresh."""
    host = open_host(tmp_path / "host.db", clock)
    terminal = Terminal(clock)
    terminal.key_exchange(host)
    heard = host.authoriser._heard_from

    def breaks_the_commit(request: Message) -> None:
        heard(request)
        host.conn.execute("PRAGMA defer_foreign_keys = ON")
        host.conn.execute("INSERT INTO ownership VALUES ('nobody', 'no-account')")

    monkeypatch.setattr(host.authoriser, "_heard_from", breaks_the_commit)
    before = host.balance(ALICE.account)
    requests = [terminal.withdrawal(ALICE, 1_000), terminal.withdrawal(ALICE, 3_000)]
    outcomes = GroupCommitter(host.authoriser).handle([(r, "") for r in requests])
    assert [o["39"] for o in outcomes if isinstance(o, dict)] == ["96", "96"]
    assert all("63" in o for o in outcomes if isinstance(o, dict))  # sealed, same size
    assert host.balance(ALICE.account) == before
    assert host.count("requests") == 0 and not host.conn.in_transaction
    monkeypatch.undo()
    retried = host.authoriser.handle(requests[0])
    assert retried is not None and retried["39"] == "00"
    host.conn.close()


def test_no_response_leaves_before_its_commit(tmp_path: Path, host_db: Path | str) -> None:
    """Many terminals at once over TCP: whenever a client holds an approval, a second
    connection to the database already sees the request stored."""
    ids = [f"ATM0020{i}" for i in range(6)]
    seed = seed_with_terminals(tmp_path / "seed.toml", ids)
    host = open_host(host_db, seed=seed)
    other = db.connect(host_db)
    seen: list[bool] = []

    async def one(port: int, index: int) -> None:
        term = LinkTerminal(port, host.clock, ids[index], seed=seed)
        await term.sign_on()
        try:
            for _ in range(4):
                reply = await term.request(term.withdrawal((ALICE, BOB, CAROL)[index % 3], 100))
                assert reply["39"] == "00"
                (stored,) = other.execute(
                    "SELECT COUNT(*) FROM requests WHERE terminal_id = ? AND stan = ?"
                    " AND transmission_time = ?",
                    (reply["41"], reply["11"], reply["7"]),
                ).fetchone()
                seen.append(stored == 1)
        finally:
            await term.close()

    async def main() -> GroupCommitter:
        server = HostServer(host.authoriser, "127.0.0.1", 0)
        port = await server.start()
        try:
            await asyncio.gather(*(one(port, i) for i in range(6)))
        finally:
            await server.stop()
        return server.committer

    committer = asyncio.run(main())
    other.close()
    assert seen and all(seen)
    assert committer.requests >= 6 * 4
    assert host.ledger.check() == []
    host.conn.close()
