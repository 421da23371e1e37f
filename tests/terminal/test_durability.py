"""How many durable commits a session costs the terminal, counted in SQLite's own logs.

Every commit the terminal makes is ``synchronous=FULL`` (an fsync), so commits are what a
session pays in time (docs/durability.md). A complete withdrawal commits at its points of
no return only: the request going out, before the dispense, after it, the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from atm_common.clock import ManualClock
from host_link.errors import HostUnavailable
from sim.scenarios.scripts import BALANCE, CONTINUE, WITHDRAW, Scenario
from terminal.counters import DurableStan
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.journal import Journal, read_tail
from terminal.saf import SafQueue
from tests.conftest import Rig
from tests.wal import CommitCount, terminal_commits

WITHDRAW_100 = Scenario(
    "w", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispensed", 10_000
)
BALANCE_ONLY = Scenario("b", "ALICE ARDEN", [Pin("1234"), BALANCE, CONTINUE], "balance_shown")
MAX_COMMITS_PER_WITHDRAWAL = 8


def test_the_wal_count_counts_commits(tmp_path: Path) -> None:
    """The counter the other tests rely on: three commits, then one of three records."""
    db = tmp_path / "j.db"
    journal = Journal(db, ManualClock())
    count = CommitCount(db)
    count.start()
    for n in range(3):
        journal.record("outside a session", n=n)  # each committed at once
    assert count.stop() == {"j.db": 3}
    count.start()
    journal.record("a", "S1")
    journal.record("b", "S1")
    assert count.stop() == {"j.db": 0}  # buffered in the open transaction
    journal.record("c", "S1", durable=True)
    assert count.stop() == {"j.db": 1}
    journal.close()


def test_a_complete_withdrawal_costs_at_most_8_durable_commits(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        for _ in range(3):  # the first one after sign-on, then two more
            count = terminal_commits(rig.terminal.config.journal)
            count.start()
            result = await rig.play(WITHDRAW_100)
            counts = count.stop()
            assert result.outcome == "dispensed"
            assert count.total <= MAX_COMMITS_PER_WITHDRAWAL, counts
            # the four points of no return, nothing queued, STANs from the reserved block
            assert counts == {"journal.db": 4, "journal-saf.db": 0, "journal-counters.db": 0}

    with_rig(body)


def test_a_balance_inquiry_commits_once_at_its_end(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        count = terminal_commits(rig.terminal.config.journal)
        count.start()
        result = await rig.play(BALANCE_ONLY)
        assert result.outcome == "balance_shown"
        assert count.stop()["journal.db"] == 1
        assert count.total == 1

    with_rig(body)


def test_atm_journal_reads_every_event_once_the_session_ends(with_rig: Any) -> None:
    """Another process (``atm journal``) sees only what is committed: a session's events
    all appear at its end, none is missing."""

    async def body(rig: Rig) -> None:
        result = await rig.play(WITHDRAW_100)
        path = rig.terminal.config.journal
        mine = [e.event for e in rig.terminal.journal.tail(200, session=result.session_id)]
        theirs = [e.event for e in read_tail(path, 200) if e.session == result.session_id]
        assert theirs == mine and mine[-1] == "session_end" and "cash_taken" in mine

    with_rig(body)


def test_buffered_events_are_lost_only_by_a_kill(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    journal = Journal(db, ManualClock())
    journal.record("durable", "S1", durable=True)
    journal.record("buffered", "S1")
    assert [e.event for e in read_tail(db, 10)] == ["durable"]  # not yet on disk
    journal.close(commit=False)  # kill -9: the open transaction is rolled back
    journal = Journal(db, ManualClock())
    assert [e.event for e in journal.tail(10)] == ["durable"]
    journal.record("buffered again", "S1")
    journal.close()  # a polite stop commits what is buffered
    assert [e.event for e in read_tail(db, 10)] == ["durable", "buffered again"]


def test_stans_come_from_durable_blocks_and_never_repeat_after_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "counters.db"
    stan = DurableStan(db, block=10)
    count = CommitCount(db)
    count.start()
    sent = [stan.next() for _ in range(25)]
    assert sent == [f"{n:06d}" for n in range(1, 26)]
    assert count.stop() == {"counters.db": 3}  # blocks 1-10, 11-20, 21-30
    stan.close()  # as a kill leaves it: nothing written since the last block
    stan = DurableStan(db, block=10)
    assert stan.next() == "000031"  # past the whole reserved block: no STAN reused
    stan.close()


def test_stan_blocks_wrap_like_the_sequence(tmp_path: Path) -> None:
    db = tmp_path / "counters.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO counters VALUES ('stan', 999995)")
    conn.commit()
    conn.close()
    stan = DurableStan(db, block=10)
    assert [stan.next() for _ in range(6)] == [
        "999996",
        "999997",
        "999998",
        "999999",
        "000001",
        "000002",
    ]
    stan.close()
    stan = DurableStan(db, block=10)
    assert stan.next() == "000007"  # the block ended at 6 (999996 + 10 wraps to 000006)
    stan.close()


class _Host:
    """Answers every SAF message 00, counting them; fails at the ``fail_at``-th."""

    def __init__(self, fail_at: int = 0) -> None:
        self.seen: list[str] = []
        self.fail_at = fail_at

    async def request(self, message: dict[str, str]) -> dict[str, str]:
        self.seen.append(message["11"])
        if len(self.seen) == self.fail_at:
            raise HostUnavailable("link down")
        return {"39": "00"}


def test_saf_queues_many_with_one_commit_and_writes_answers_in_batches(tmp_path: Path) -> None:
    db = tmp_path / "saf.db"
    saf = SafQueue(db, ManualClock())
    count = CommitCount(db)
    count.start()
    parts = [{"t": "0620", "11": f"{n:06d}", "7": "0101120000"} for n in range(40)]
    saf.enqueue_all(parts)
    assert count.stop() == {"saf.db": 1}  # 40 snapshot parts, one fsync
    count.start()
    host = _Host()
    assert asyncio.run(saf.drain(host, force=True)) == 40  # type: ignore[arg-type]
    assert count.stop() == {"saf.db": 2}  # answers written 32 at a time, then the last 8
    assert saf.pending == 0 and len(host.seen) == 40
    saf.close()


def test_saf_writes_the_answers_it_has_when_the_drain_stops(tmp_path: Path) -> None:
    saf = SafQueue(tmp_path / "saf.db", ManualClock())
    saf.enqueue_all([{"t": "0400", "11": f"{n:06d}", "7": "0101120000"} for n in range(5)])
    assert asyncio.run(saf.drain(_Host(fail_at=3), force=True)) == 2  # type: ignore[arg-type]
    saf.close()
    again = SafQueue(tmp_path / "saf.db", ManualClock())  # what the disk says
    assert [(e.status, e.attempts) for e in again.entries()] == [
        ("done", 1),
        ("done", 1),
        ("pending", 1),  # failed once: retried later with the repeat MTI
        ("pending", 0),
        ("pending", 0),
    ]
    again.close()
