"""Loading the host's world from TOML: the demo seed, secrets at rest, and errors."""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.crypto.pinblock import verify_ibm3624
from atm_common.crypto.tdes import decrypt_block
from atm_common.errors import ConfigError
from sim.host import db
from sim.host.ledger import Ledger
from sim.host.seed import load_seed
from tests.host.helpers import (
    CARDS,
    DEMO_SEED,
    Terminal,
    demo_seed_data,
    open_host,
    parse_key_exchange,
)

DEMO_TEXT = DEMO_SEED.read_text()
TABLES = ("persons", "accounts", "ownership", "cards", "card_accounts", "terminals", "transfers")


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_demo_seed_loads(tmp_path: Path) -> None:
    host = open_host(tmp_path / "host.db")
    data = demo_seed_data()
    try:
        assert host.settings.currency == "840"
        assert host.settings.pin_tries == 3
        assert sorted(host.keys.terminals) == ["ATM00001", "ATM00002"]
        assert host.keys.terminals["ATM00001"].mode == "tdes"
        assert host.keys.terminals["ATM00001"].tmk == bytes.fromhex(data["terminals"][0]["tmk"])
        assert host.keys.terminals["ATM00002"].mode == "aes-dukpt"
        assert (
            host.keys.terminals["ATM00002"].initial_key_id.hex().upper()
            == (data["terminals"][1]["ik_id"])
        )
        assert host.keys.lmk == bytes.fromhex(data["host"]["lmk"])
        c = counts(host.conn)
        assert c["persons"] == len(data["persons"])
        assert c["cards"] == len(data["cards"])
        assert c["terminals"] == 2
        for account in data["accounts"]:
            assert host.balance(account["number"]) == account["balance"]
        for terminal in data["terminals"]:
            assert host.balance(f"GL-CASH-{terminal['id']}") == terminal["cash"]
        assert host.ledger.check() == []
        expired = host.card_row(CARDS["dave_expired"].pan)
        assert expired["expiry"] == "2401"
        assert expired["status"] == "active"
    finally:
        host.conn.close()


def test_keys_do_not_show_in_repr(tmp_path: Path) -> None:
    host = open_host(tmp_path / "host.db")
    host.conn.close()
    data = demo_seed_data()
    secrets = [data["host"][k] for k in ("pvk", "pan_key", "lmk", "bdk_aes")]
    secrets.append(data["terminals"][0]["tmk"])
    for text in (repr(host.keys), repr(host.keys.terminals), repr(host.authoriser.key_store)):
        for secret in secrets:
            assert secret not in text.upper()
            assert repr(bytes.fromhex(secret)) not in text
        assert "ATM00001" in text


def test_pan_references_are_hmacs_and_offsets_verify(tmp_path: Path) -> None:
    host = open_host(tmp_path / "host.db")
    pan_key = bytes.fromhex(demo_seed_data()["host"]["pan_key"])
    pvk = bytes.fromhex(demo_seed_data()["host"]["pvk"])
    try:
        for card in CARDS.values():
            ref = hmac.new(pan_key, card.pan.encode(), hashlib.sha256).hexdigest()
            row = host.card_row(card.pan)
            assert row["pan_ref"] == ref
            assert row["pan_masked"] == f"{card.pan[:6]}{'*' * (len(card.pan) - 10)}{card.pan[-4:]}"
            assert row["pin_offset"] != card.pin
            assert verify_ibm3624(card.pin, card.pan, pvk, row["pin_offset"])
    finally:
        host.conn.close()


def test_no_clear_pin_or_full_pan_in_the_database_files(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    host = open_host(path)
    # Some traffic too, so requests, transfers and working keys are in the files.
    terminal = Terminal(host.clock)
    exchange = terminal.key_exchange(host)
    for card in CARDS.values():
        host.authoriser.handle(terminal.balance_inquiry(card))
        host.authoriser.handle(terminal.withdrawal(card, 1_000))
        host.authoriser.handle(terminal.balance_inquiry(card, "0000"))
    files = [path, path.with_name(path.name + "-wal")]
    blob = b"".join(f.read_bytes() for f in files if f.exists())
    assert path.with_name(path.name + "-wal").exists(), "WAL file expected while open"
    host.conn.close()
    blob += b"".join(f.read_bytes() for f in files if f.exists())
    assert len(blob) > 4096
    data = demo_seed_data()
    without_hex = re.sub(rb"[0-9A-Fa-f]{16,}", b"#", blob)
    for card in data["cards"]:
        pan, pin = card["pan"], card["pin"]
        assert pan.encode() not in blob, f"full PAN {pan[:6]}... stored"
        assert pan.encode("utf-16-le") not in blob
        # Random hex (digests, key cryptograms, HMACs) may contain any 4 digits by chance.
        assert pin.encode() not in without_hex, f"clear PIN of {pan[-4:]} stored"
        # The PAN's 12-digit core (the part ISO 9564 binds to) is not stored either.
        assert pan[3:15].encode() not in blob
    secrets = [data["host"][k] for k in ("pvk", "pan_key", "lmk", "bdk_aes")]
    secrets += [t["tmk"] for t in data["terminals"] if "tmk" in t]
    assert terminal.tpk is not None
    working = parse_key_exchange(exchange)
    tak = decrypt_block(terminal.tmk, bytes.fromhex(working["TAK"]))
    secrets += [terminal.tpk.hex().upper(), tak.hex().upper()]
    for key in secrets:
        assert key.encode() not in blob and key.lower().encode() not in blob
        assert bytes.fromhex(key) not in blob
    # No column anywhere holds a PIN or a PAN, in whole or as a JSON value.
    check = db.connect(path)
    try:
        tables = [r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in check.execute(f"SELECT * FROM {table}"):
                for value in tuple(row):
                    text = str(value)
                    for card in data["cards"]:
                        assert text != card["pin"] and f'"{card["pin"]}"' not in text
                        assert card["pan"] not in text
    finally:
        check.close()
    # What *is* stored for a card: an HMAC reference and a masked PAN.
    assert re.search(rb"[0-9a-f]{64}", blob)
    assert b"476173******0010" in blob


def test_reloading_a_populated_database_does_not_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    first = open_host(path)
    before = counts(first.conn)
    keys = first.keys
    first.conn.close()
    second = open_host(path)
    try:
        assert counts(second.conn) == before
        assert sorted(second.keys.terminals) == sorted(keys.terminals)
        assert second.keys.terminals["ATM00001"].tmk == keys.terminals["ATM00001"].tmk
        assert second.keys.pan_ref("4761739001010010") == keys.pan_ref("4761739001010010")
        # And loading again on the same connection changes nothing either.
        load_seed(second.conn, DEMO_SEED, Ledger(second.conn, ManualClock()))
        assert counts(second.conn) == before
        assert second.ledger.check() == []
    finally:
        second.conn.close()


# -- errors name the file and the key ------------------------------------------------------


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Callable[[str], sqlite3.Connection]]:
    conns: list[sqlite3.Connection] = []

    def run(text: str) -> sqlite3.Connection:
        seed = tmp_path / "bad-seed.toml"
        seed.write_text(text)
        conn = db.connect(tmp_path / f"host{len(conns)}.db")
        conns.append(conn)
        load_seed(conn, seed, Ledger(conn, ManualClock()))
        return conn

    yield run
    for conn in conns:
        conn.close()


def replace_once(old: str, new: str, text: str = DEMO_TEXT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def expect_config_error(
    load: Callable[[str], sqlite3.Connection], text: str, key: str, words: str = ""
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text)
    err = info.value
    assert err.source.endswith("bad-seed.toml")
    assert err.key == key, str(err)
    assert "bad-seed.toml" in str(err) and key in str(err)
    if words:
        assert words in err.problem
    return err


def test_missing_file(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "host.db")
    try:
        with pytest.raises(ConfigError, match="file not found") as info:
            load_seed(conn, tmp_path / "nope.toml", Ledger(conn, ManualClock()))
        assert info.value.source.endswith("nope.toml")
    finally:
        conn.close()


def test_invalid_toml(load: Callable[[str], sqlite3.Connection]) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load("[host\npvk = ")


def test_missing_host_table(load: Callable[[str], sqlite3.Connection]) -> None:
    expect_config_error(load, replace_once("[host]", "[hoster]"), "host", "required")


def test_missing_key(load: Callable[[str], sqlite3.Connection]) -> None:
    text = re.sub(r"^pvk = .*$", "", DEMO_TEXT, count=1, flags=re.M)
    expect_config_error(load, text, "host.pvk", "required")


def test_bad_hex_key(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('pvk = "0123456789ABCDEF', 'pvk = "0123456789ABCDEG')
    expect_config_error(load, text, "host.pvk", "hexadecimal")


def test_key_of_wrong_size(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('tmk = "89ABCDEF01234567FEDCBA9876543210"', 'tmk = "89ABCDEF01234567"')
    expect_config_error(load, text, "terminals[0].tmk", "bytes")


def test_missing_tmk(load: Callable[[str], sqlite3.Connection]) -> None:
    text = re.sub(r"^tmk = .*$", "", DEMO_TEXT, count=1, flags=re.M)
    expect_config_error(load, text, "terminals[0].tmk", "required")


def test_unknown_security_mode(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('security = "aes-dukpt"', 'security = "rot13"')
    expect_config_error(load, text, "terminals[1].security", "must be one of")


def test_bad_initial_key_id(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('ik_id = "1234567890123456"', 'ik_id = "12345678"')
    expect_config_error(load, text, "terminals[1].ik_id", "bytes")


def test_missing_lmk(load: Callable[[str], sqlite3.Connection]) -> None:
    text = re.sub(r"^lmk = .*$", "", DEMO_TEXT, count=1, flags=re.M)
    expect_config_error(load, text, "host.lmk", "required")


def test_key_of_wrong_type(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('pan_key = "3C1F5A9D7E2B4C6A8F0E1D2C3B4A5968"', "pan_key = 12")
    expect_config_error(load, text, "host.pan_key", "must be str")


def test_bad_terminal_id(load: Callable[[str], sqlite3.Connection]) -> None:
    expect_config_error(
        load, replace_once('id = "ATM00002"', 'id = "ATM2"'), "terminals[1].id", "8 characters"
    )


@pytest.mark.parametrize("expiry", ["3013", "301", "30x2", "3000"])
def test_bad_expiry(load: Callable[[str], sqlite3.Connection], expiry: str) -> None:
    text = replace_once('expiry = "2911"', f'expiry = "{expiry}"')
    expect_config_error(load, text, "cards[1].expiry", "YYMM")


def test_bad_pan(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('pan = "4761739001010028"', 'pan = "47617390"')
    expect_config_error(load, text, "cards[2].pan", "13-19 digits")


def test_bad_pin(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('pin = "9753"', 'pin = "97"')
    expect_config_error(load, text, "cards[3].pin", "4-12 digits")


def test_pin_of_wrong_type(load: Callable[[str], sqlite3.Connection]) -> None:
    expect_config_error(load, replace_once('pin = "1234"', "pin = 1234"), "cards[0].pin", "str")


def test_unknown_account_owner(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('owners = ["bob"]', 'owners = ["zed"]')
    expect_config_error(load, text, "accounts[1].owners", "unknown")


def test_card_for_unknown_account(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('accounts = ["1000000003"]', 'accounts = ["9999999999"]')
    expect_config_error(load, text, "cards[2].accounts", "unknown")


def test_card_of_unknown_owner(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('owner = "carol"', 'owner = "zed"')
    expect_config_error(load, text, "cards[2].owner", "unknown")


def test_card_with_bad_status(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('name = "BOB BRANDT"', 'name = "BOB BRANDT"\nstatus = "lost"')
    expect_config_error(load, text, "cards[1].status")


def test_repeated_person_id(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('id = "bob"', 'id = "alice"')
    expect_config_error(load, text, "persons[1].id")


def test_repeated_terminal_id(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('id = "ATM00002"', 'id = "ATM00001"')
    expect_config_error(load, text, "terminals[1].id")


def test_repeated_account_number(load: Callable[[str], sqlite3.Connection]) -> None:
    text = replace_once('number = "1000000002"', 'number = "1000000001"')
    expect_config_error(load, text, "accounts[1].number")


def test_failed_seed_leaves_the_database_empty(
    tmp_path: Path, load: Callable[[str], sqlite3.Connection]
) -> None:
    with pytest.raises(ConfigError):
        load(replace_once('expiry = "2908"', 'expiry = "2913"'))
    conn = db.connect(tmp_path / "host0.db")
    try:
        assert all(n == 0 for n in counts(conn).values()), counts(conn)
    finally:
        conn.close()
    # And the fixed seed then loads into the same file.
    fixed = db.connect(tmp_path / "host0.db")
    try:
        load_seed(fixed, DEMO_SEED, Ledger(fixed, ManualClock()))
        assert counts(fixed)["cards"] == len(CARDS)
    finally:
        fixed.close()
