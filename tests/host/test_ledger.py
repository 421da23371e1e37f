"""Double-entry ledger with two-phase transfers, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_common.clock import ManualClock
from sim.host import db
from sim.host.errors import LedgerError
from sim.host.ledger import Ledger, transaction


@pytest.fixture
def conn(host_db: Path | str) -> Iterator[sqlite3.Connection]:
    c = db.connect(host_db)
    yield c
    c.close()


@pytest.fixture
def ledger(conn: sqlite3.Connection) -> Ledger:
    led = Ledger(conn, ManualClock())
    with transaction(conn):
        led.open_account("GL-OPEN", kind="gl", normal="debit", currency="840")
        led.open_account("GL-CASH", kind="gl", normal="debit", currency="840")
        led.open_account("A", kind="customer", normal="credit", currency="840")
        led.open_account("B", kind="customer", normal="credit", currency="840")
        led.open_account("EUR", kind="customer", normal="credit", currency="978")
        led.transfer("GL-OPEN", "A", 10_000, kind="opening")
    return led


def test_opening_balances(ledger: Ledger) -> None:
    assert ledger.balance("A").ledger == 10_000
    assert ledger.balance("A").available == 10_000
    assert ledger.balance("GL-OPEN").ledger == 10_000  # debit-normal, debited
    assert ledger.check() == []


def test_transfer_is_balanced(ledger: Ledger, conn: sqlite3.Connection) -> None:
    with transaction(conn):
        tid = ledger.transfer("A", "GL-CASH", 2_500, kind="withdrawal", terminal_id="ATM00001")
    row = conn.execute("SELECT * FROM transfers WHERE id = ?", (tid,)).fetchone()
    assert (row["debit_account"], row["credit_account"], row["amount"], row["status"]) == (
        "A",
        "GL-CASH",
        2_500,
        "posted",
    )
    assert row["business_date"] == "2026-01-01"
    assert ledger.balance("A").ledger == 7_500
    assert ledger.balance("GL-CASH").ledger == -2_500  # debit-normal asset, credited
    (debits, credits) = conn.execute(
        "SELECT SUM(debits_posted), SUM(credits_posted) FROM accounts"
    ).fetchone()
    assert debits == credits == 12_500
    assert ledger.check() == []


def test_overdraft_is_not_the_ledgers_business(ledger: Ledger) -> None:
    # Funds checks belong to the rules; the ledger records what it is told.
    ledger.transfer("B", "GL-CASH", 100, kind="withdrawal")
    assert ledger.balance("B").ledger == -100
    assert ledger.check() == []


@pytest.mark.parametrize(
    ("debit", "credit", "amount", "words"),
    [
        ("A", "NOPE", 100, "unknown account NOPE"),
        ("NOPE", "A", 100, "unknown account NOPE"),
        ("A", "A", 100, "two different accounts"),
        ("A", "B", 0, "positive"),
        ("A", "B", -5, "positive"),
        ("A", "EUR", 100, "currency"),
    ],
)
def test_transfer_refusals(
    ledger: Ledger, debit: str, credit: str, amount: int, words: str
) -> None:
    before = ledger.conn.execute("SELECT COUNT(*) FROM transfers").fetchone()[0]
    with pytest.raises(LedgerError, match=words):
        ledger.transfer(debit, credit, amount, kind="test")
    assert ledger.conn.execute("SELECT COUNT(*) FROM transfers").fetchone()[0] == before
    assert ledger.balance("A").ledger == 10_000
    assert ledger.check() == []


def test_duplicate_account_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="already exists"):
        ledger.open_account("A", kind="customer", normal="credit", currency="840")


def test_invalid_account_kind_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.open_account("C", kind="martian", normal="credit", currency="840")


def test_balance_of_unknown_account(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="unknown account"):
        ledger.balance("NOPE")


def test_hold_reduces_available_not_ledger(ledger: Ledger) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    balance = ledger.balance("A")
    assert (balance.ledger, balance.available) == (10_000, 7_000)
    assert ledger.check() == []
    assert (
        ledger.conn.execute("SELECT status FROM transfers WHERE id = ?", (hold,)).fetchone()[0]
        == "pending"
    )


def test_post_full_hold(ledger: Ledger, conn: sqlite3.Connection) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    posted = ledger.settle(hold, post=True)
    assert posted is not None and posted != hold
    assert ledger.balance("A").ledger == 7_000
    assert ledger.balance("A").available == 7_000
    assert ledger.balance("GL-CASH").ledger == -3_000
    rows = {r["id"]: r for r in conn.execute("SELECT * FROM transfers")}
    assert rows[hold]["status"] != "pending"
    assert rows[posted]["status"] == "posted"
    assert rows[posted]["pending_id"] == hold
    assert rows[posted]["amount"] == 3_000
    assert ledger.check() == []


def test_post_partial_hold(ledger: Ledger, conn: sqlite3.Connection) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    posted = ledger.settle(hold, post=True, amount=1_200)
    assert ledger.balance("A").ledger == 8_800
    assert ledger.balance("A").available == 8_800  # the rest of the hold is released
    row = conn.execute("SELECT * FROM transfers WHERE id = ?", (posted,)).fetchone()
    assert row["amount"] == 1_200
    assert ledger.check() == []


def test_void_hold(ledger: Ledger) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    assert ledger.settle(hold, post=False) is None
    assert ledger.balance("A").ledger == 10_000
    assert ledger.balance("A").available == 10_000
    assert ledger.check() == []


def test_hold_settles_only_once(ledger: Ledger) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    ledger.settle(hold, post=True)
    with pytest.raises(LedgerError, match="not a pending hold"):
        ledger.settle(hold, post=False)
    with pytest.raises(LedgerError, match="not a pending hold"):
        ledger.settle(hold, post=True)
    assert ledger.balance("A").ledger == 7_000


def test_settle_refuses_posted_and_unknown_transfers(ledger: Ledger) -> None:
    posted = ledger.transfer("A", "GL-CASH", 100, kind="withdrawal")
    with pytest.raises(LedgerError):
        ledger.settle(posted, post=True)
    with pytest.raises(LedgerError):
        ledger.settle(999_999, post=True)


@pytest.mark.parametrize("amount", [0, -1, 3_001])
def test_post_amount_must_be_within_the_hold(
    ledger: Ledger, conn: sqlite3.Connection, amount: int
) -> None:
    hold = ledger.transfer("A", "GL-CASH", 3_000, kind="hold", pending=True)
    with pytest.raises(LedgerError), transaction(conn):
        ledger.settle(hold, post=True, amount=amount)
    # Rolled back: the hold is still there, untouched.
    assert ledger.balance("A").available == 7_000
    assert ledger.check() == []
    ledger.settle(hold, post=False)
    assert ledger.balance("A").available == 10_000


@pytest.mark.parametrize(
    "column", ["debits_posted", "credits_posted", "debits_pending", "credits_pending"]
)
def test_check_finds_a_tampered_counter(
    ledger: Ledger, conn: sqlite3.Connection, column: str
) -> None:
    ledger.transfer("A", "GL-CASH", 100, kind="hold", pending=True)
    assert ledger.check() == []
    conn.execute(f"UPDATE accounts SET {column} = {column} + 1 WHERE id = 'B'")
    problems = ledger.check()
    assert any(p.startswith(f"B: {column} is 1 but transfers say 0") for p in problems), problems


def test_check_finds_a_tampered_transfer(ledger: Ledger, conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE transfers SET amount = amount + 1")
    problems = ledger.check()
    assert any("A: credits_posted" in p for p in problems)
    assert any("GL-OPEN: debits_posted" in p for p in problems)


def test_check_finds_unbalanced_books(ledger: Ledger, conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE accounts SET credits_posted = credits_posted + 7 WHERE id = 'A'")
    problems = ledger.check()
    assert any("do not balance" in p for p in problems)


def test_transaction_rolls_back_on_error(ledger: Ledger, conn: sqlite3.Connection) -> None:
    with pytest.raises(LedgerError), transaction(conn):
        ledger.transfer("A", "B", 1_000, kind="test")
        ledger.transfer("A", "NOPE", 1_000, kind="test")
    assert ledger.balance("A").ledger == 10_000
    assert ledger.balance("B").ledger == 0
    assert conn.execute("SELECT COUNT(*) FROM transfers").fetchone()[0] == 1
    assert not conn.in_transaction
    assert ledger.check() == []


def test_transaction_rolls_back_on_any_exception(ledger: Ledger, conn: sqlite3.Connection) -> None:
    with pytest.raises(KeyboardInterrupt), transaction(conn):
        ledger.transfer("A", "B", 1_000, kind="test")
        raise KeyboardInterrupt
    assert ledger.balance("B").ledger == 0
    assert not conn.in_transaction


def test_committed_transfer_is_durable(
    ledger: Ledger, conn: sqlite3.Connection, host_db: Path | str
) -> None:
    with transaction(conn):
        ledger.transfer("A", "B", 1_234, kind="test")
    other = db.connect(host_db)
    try:
        assert Ledger(other, ManualClock()).balance("B").ledger == 1_234
    finally:
        other.close()


def test_an_sqlite_ledger_is_in_wal_mode(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL keeps its own write-ahead log, nothing to choose there."""
    conn = db.connect(tmp_path / "host.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["post", "void", "partial", "plain"]),
            st.sampled_from(["A", "B", "GL-CASH"]),
            st.sampled_from(["A", "B", "GL-CASH"]),
            st.integers(1, 5_000),
        ),
        max_size=25,
    )
)
def test_random_operations_keep_the_books_balanced(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, str, int]]
) -> None:
    conn = db.connect(tmp_path_factory.mktemp("led") / "l.db")
    try:
        led = Ledger(conn, ManualClock())
        for acc, normal in (("A", "credit"), ("B", "credit"), ("GL-CASH", "debit")):
            led.open_account(acc, kind="gl", normal=normal, currency="840")
        expected = {"A": 0, "B": 0}
        for op, debit, credit, amount in ops:
            if debit == credit:
                with pytest.raises(LedgerError):
                    led.transfer(debit, credit, amount, kind="x")
                continue
            if op == "plain":
                led.transfer(debit, credit, amount, kind="x")
                posted = amount
            else:
                hold = led.transfer(debit, credit, amount, kind="x", pending=True)
                part = max(1, amount // 2) if op == "partial" else amount
                led.settle(hold, post=op != "void", amount=part if op != "void" else None)
                posted = 0 if op == "void" else part
            for acc in expected:
                if acc == debit:
                    expected[acc] -= posted
                if acc == credit:
                    expected[acc] += posted
            assert led.check() == []
        for acc, value in expected.items():
            assert led.balance(acc).ledger == value
            assert led.balance(acc).available == value
    finally:
        conn.close()
