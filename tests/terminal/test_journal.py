from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from terminal.errors import JournalError
from terminal.journal import Journal, read_tail


def test_records_and_tails_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", ManualClock())
    for i in range(5):
        journal.record("step", "S1", n=i)
    journal.record("other", "S2")
    tail = journal.tail(3)
    assert [e.event for e in tail] == ["step", "step", "other"]
    assert [e.data.get("n") for e in journal.tail(10, session="S1")] == [0, 1, 2, 3, 4]
    journal.close()
    assert [e.seq for e in read_tail(tmp_path / "j.db", 2)] == [5, 6]


def test_pan_masked_and_stray_pans_scrubbed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", ManualClock())
    journal.record("card_read", pan="4761739001010010", note="card 5413330089010012 seen")
    entry = journal.tail(1)[0]
    assert entry.data == {"pan": "476173******0010", "note": "card 541333******0012 seen"}
    journal.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("j.db*"))
    assert b"4761739001010010" not in raw and b"5413330089010012" not in raw


@pytest.mark.parametrize("key", ["pin", "pin_block", "PinBlock", "mac_key", "track2", "cvv"])
def test_refuses_sensitive_keys(tmp_path: Path, key: str) -> None:
    journal = Journal(tmp_path / "j.db", ManualClock())
    with pytest.raises(JournalError, match="sensitive"):
        journal.record("oops", **{key: "x"})
    with pytest.raises(JournalError, match="sensitive"):
        journal.record("nested", details={key: "x"})
    assert journal.tail() == []


def test_refuses_raw_bytes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", ManualClock())
    with pytest.raises(JournalError, match="raw bytes"):
        journal.record("oops", blob=b"\x01\x02")


def test_append_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", ManualClock())
    journal.record("a")
    journal.close()
    conn = sqlite3.connect(tmp_path / "j.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE journal SET event = 'b'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM journal")


def test_survives_reopen(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db", ManualClock()).record("before")
    journal = Journal(tmp_path / "j.db", ManualClock())
    journal.record("after")
    assert [e.event for e in journal.tail()] == ["before", "after"]


def test_read_tail_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        read_tail(tmp_path / "missing.db", 5)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(JournalError, match=r"bad\.db"):
        read_tail(bad, 5)
