"""The permission table as a pycasbin policy in the host database: two connections (as
two host processes would have) see each other's changes at their next check, and the
seed's [enterprise] table is checked key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from sim.host import db
from sim.host.enterprise.policy import PolicyBook, domain
from sim.host.ledger import Ledger, transaction
from sim.host.seed import load_seed
from tests.host.helpers import DEMO_SEED

DOM = domain("ACME-TRUST", "custody")


def test_a_change_through_one_connection_is_enforced_by_another(tmp_path: Path) -> None:
    first = db.connect(tmp_path / "host.db")
    load_seed(first, DEMO_SEED, Ledger(first, ManualClock()))
    second = db.connect(tmp_path / "host.db")  # another process's connection
    writer, reader = PolicyBook(first), PolicyBook(second)
    assert reader.entry("beneficiary", DOM) == (["balance"], ["2000000004"])
    assert not reader.allowed("jan", "beneficiary", DOM, "2000000004", "withdraw")
    assert reader.allowed("jan", "beneficiary", DOM, "2000000004", "balance")
    # a user cannot act in a role they do not hold, nor as the role itself
    assert not reader.allowed("gail", "beneficiary", DOM, "2000000004", "balance")
    assert not reader.allowed("beneficiary", "beneficiary", DOM, "2000000004", "balance")
    with transaction(first):
        writer.set_entry("beneficiary", DOM, ["balance", "withdraw"], ["2000000004"])
    assert reader.allowed("jan", "beneficiary", DOM, "2000000004", "withdraw")
    assert reader.entry("beneficiary", DOM) == (["balance", "withdraw"], ["2000000004"])
    with transaction(first):
        writer.set_entry("beneficiary", DOM, [], [])  # removes the entry
    assert reader.entry("beneficiary", DOM) == ([], [])
    assert not reader.allowed("jan", "beneficiary", DOM, "2000000004", "balance")
    # a rolled-back change changes nothing, in memory or in the database
    with pytest.raises(RuntimeError), transaction(first):
        writer.set_entry("beneficiary", DOM, ["balance"], ["2000000004"])
        raise RuntimeError("abandoned")
    assert reader.entry("beneficiary", DOM) == ([], [])
    first.close()
    second.close()


def _seed_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO_SEED.read_text()
    assert old in text
    path = tmp_path / "seed.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('"trustee@custody"', '"chairman@custody"', "enterprise.companies[0].users[1].roles[0]"),
        ('{ role = "beneficiary"', '{ role = "boss"', "enterprise.companies[0].table[5].role"),
        ('"statement", "transfer"]', '"statement", "fly"]', "enterprise.companies[0].table[2]"),
        ('accounts = ["2000000004"] }', 'accounts = ["1000000001"] }', "table[5].accounts"),
        ('{ person = "kim"', '{ person = "nobody"', "enterprise.companies[0].users[4].person"),
    ],
)
def test_a_bad_enterprise_seed_names_its_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    seed = _seed_with(tmp_path, old, new)
    conn = db.connect(tmp_path / "host.db")
    with pytest.raises(ConfigError) as error:
        load_seed(conn, seed, Ledger(conn, ManualClock()))
    assert key in str(error.value)
    assert str(seed) in str(error.value)
    assert conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == 0  # nothing seeded
    conn.close()
