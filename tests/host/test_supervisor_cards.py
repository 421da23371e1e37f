"""Supervisor cards at the host: card + PIN checked as for customers, the role from the
host, three wrong PINs block the card, every attempt recorded (PAN masked, no PIN block).
Both engines (the ``host_db`` fixture)."""

from __future__ import annotations

import pytest

from atm_common.errors import ConfigError
from atm_common.masking import mask_pan
from sim.host.supervision.cards import load_supervisor_cards
from sim.host.supervision.fleet import list_terminals
from terminal import transactions
from tests.host.helpers import Card, Host, Terminal, card_data, demo_seed_data

_SEEDED = {c["role"]: c for c in demo_seed_data()["supervisor_cards"]}
REPLENISHER = Card(_SEEDED["replenisher"]["pan"], _SEEDED["replenisher"]["pin"], "3012", "", 0)
TECHNICIAN = Card(_SEEDED["technician"]["pan"], _SEEDED["technician"]["pin"], "3012", "", 0)


def _enter(
    host: Host, terminal: Terminal, card: Card, pin: str | None = None, expiry: str | None = None
) -> dict[str, str]:
    block, ksn = terminal.pin_block(card, pin)
    request = transactions.supervisor_card_entry(
        terminal.config, card_data(card, expiry), block, ksn
    )
    response = host.authoriser.handle(terminal.client.stamp(request))
    assert response is not None and response["t"] == "0810" and response["70"] == "171"
    assert not {"2", "14", "35", "52", "110"} & set(response)  # no card data comes back
    return dict(response)


def _events(host: Host) -> list[str]:
    rows = host.conn.execute(
        "SELECT detail FROM supervision_events WHERE kind = 'supervisor_card' ORDER BY at"
    ).fetchall()
    return [r[0] for r in rows]


def _mode(host: Host) -> tuple[str, str]:
    (t,) = [t for t in list_terminals(host.conn) if t["terminal_id"] == "ATM00001"]
    return t["mode"], t["supervisor"]


def test_the_right_pin_opens_the_cards_role(host: Host, terminal: Terminal) -> None:
    response = _enter(host, terminal, TECHNICIAN)
    assert (response["39"], response["63"]) == ("00", "technician")
    assert _mode(host) == ("supervisor", "technician")
    assert _events(host) == [f"{mask_pan(TECHNICIAN.pan)} accepted technician"]
    response = _enter(host, terminal, REPLENISHER)
    assert (response["39"], response["63"]) == ("00", "replenisher")


def test_wrong_pins_block_the_card_after_three(host: Host, terminal: Terminal) -> None:
    for attempt in (1, 2):
        response = _enter(host, terminal, REPLENISHER, pin="0000")
        assert response["39"] == "55" and "63" not in response, attempt
    assert _mode(host)[0] != "supervisor"
    assert _enter(host, terminal, REPLENISHER, pin="0000")["39"] == "75"
    row = host.conn.execute(
        "SELECT status, pin_tries FROM supervisor_cards WHERE pan_ref = ?",
        (host.keys.pan_ref(REPLENISHER.pan),),
    ).fetchone()
    assert (row[0], row[1]) == ("blocked", 3)
    # blocked stays blocked, the right PIN included; the other card is not touched
    assert _enter(host, terminal, REPLENISHER)["39"] == "75"
    assert _enter(host, terminal, TECHNICIAN)["39"] == "00"
    events = _events(host)  # in any order: the clock stood still
    mine = [e for e in events if e.startswith(mask_pan(REPLENISHER.pan))]
    assert len(events) == 5 and len(mine) == 4
    assert sorted(e.split()[2] for e in mine) == ["55:", "55:", "75:", "75:"]
    # nothing of the PIN or the full PAN anywhere in the supervision tables
    block, _ = terminal.pin_block(REPLENISHER)
    dump = " ".join(str(tuple(r)) for r in host.conn.execute("SELECT * FROM supervision_events"))
    assert REPLENISHER.pan not in dump and "7410" not in dump and block.hex() not in dump.lower()


def test_a_right_pin_clears_the_wrong_tries(host: Host, terminal: Terminal) -> None:
    assert _enter(host, terminal, TECHNICIAN, pin="0000")["39"] == "55"
    assert _enter(host, terminal, TECHNICIAN, pin="0000")["39"] == "55"
    assert _enter(host, terminal, TECHNICIAN)["39"] == "00"
    assert _enter(host, terminal, TECHNICIAN, pin="0000")["39"] == "55"  # counting again from 0


def test_unknown_card_and_wrong_expiry_get_one_code(host: Host, terminal: Terminal) -> None:
    stranger = Card("6009990000000034", "7410", "3012", "", 0)
    assert _enter(host, terminal, stranger)["39"] == "14"
    assert _enter(host, terminal, TECHNICIAN, expiry="2912")["39"] == "14"
    assert _mode(host)[0] != "supervisor"
    assert len(_events(host)) == 2 and all(" refused 14:" in e for e in _events(host))


def test_a_staff_role_that_does_not_open_an_atm(host: Host, terminal: Terminal) -> None:
    host.conn.execute(
        "UPDATE supervisor_cards SET role = 'auditor' WHERE pan_ref = ?",
        (host.keys.pan_ref(TECHNICIAN.pan),),
    )
    host.conn.commit()
    assert _enter(host, terminal, TECHNICIAN)["39"] == "57"
    assert _mode(host)[0] != "supervisor"


def test_a_customer_card_is_no_supervisor_card(host: Host, terminal: Terminal) -> None:
    alice = Card("4761739001010010", "1234", "3012", "", 0)
    assert _enter(host, terminal, alice)["39"] == "14"


def test_key_entry_is_unchanged(host: Host, terminal: Terminal) -> None:
    request = terminal.client.stamp({"t": "0800", "70": "171", "63": "replenisher"})
    response = host.authoriser.handle(request)
    assert response is not None and response["39"] == "00" and "63" not in response
    assert _mode(host) == ("supervisor", "replenisher")
    assert _events(host) == []


def test_seed_errors_name_the_key(host: Host) -> None:
    bad = [{"pan": "6009990000000042", "expiry": "3012", "role": "technician", "pin": "12"}]
    with pytest.raises(ConfigError, match=r"supervisor_cards\[0\]\.pin"):
        load_supervisor_cards(host.conn, "seed.toml", bad, host.keys)
    with pytest.raises(ConfigError, match=r"supervisor_cards\[0\]\.expiry"):
        load_supervisor_cards(host.conn, "seed.toml", [bad[0] | {"expiry": "3013"}], host.keys)
    with pytest.raises(ConfigError, match="supervisor_cards"):
        load_supervisor_cards(host.conn, "seed.toml", {"pan": "1"}, host.keys)
