"""Duress PIN at the host: approved like the PIN, capped, one silent alarm per incident."""

from __future__ import annotations

import json
from collections.abc import Mapping

from atm_common.clock import ManualClock
from host_link.amounts import AmountType, decode_amounts
from host_link.evidence import (
    PART_CHARS,
    RESPONSE_CHARS,
    EvidenceRequest,
    decode_sealed,
    encode_sealed,
    parse_request,
    part_plaintexts,
)
from sim.alarm_center.contract import validate_alarm
from sim.host import outbox

from .helpers import CARDS, DUKPT_TERMINAL, Host, Terminal

ERIN = CARDS["erin"]
DURESS_PIN = "0852"
CAP = 30_000  # Erin's account safety amount


def _asked(terminal: Terminal, response: Mapping[str, str]) -> EvidenceRequest | None:
    sealed = decode_sealed(response["63"], RESPONSE_CHARS)
    return parse_request(terminal.pad.decrypt_response_data(sealed, response.get("53")))


def _part(terminal: Terminal, ref: str, snapshot: int, jpeg: bytes) -> str:
    field = encode_sealed(terminal.pad.encrypt_advice_data(part_plaintexts(ref, snapshot, jpeg)[0]))
    assert len(field) == PART_CHARS
    return field


def _alarms(host: Host) -> list[dict[str, object]]:
    return [e.payload for e in outbox.entries(host.conn) if e.kind == "alarm"]


def test_duress_pin_is_approved_with_the_capped_limit(host: Host, terminal: Terminal) -> None:
    normal = host.authoriser.handle(terminal.balance_inquiry(ERIN))
    duress = host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN), "10.0.0.9")
    assert normal is not None and duress is not None
    assert normal["39"] == duress["39"] == "00"
    limits = decode_amounts(duress["54"])
    assert limits[AmountType.WITHDRAWAL_LIMIT] == CAP  # min(balance 5000.00, safety 300.00)
    assert decode_amounts(normal["54"])[AmountType.WITHDRAWAL_LIMIT] == 100_000
    assert limits[AmountType.LEDGER_BALANCE] == 500_000  # the balance itself is not hidden
    (alarm,) = _alarms(host)
    assert alarm["terminal_id"] == "ATM00001" and alarm["terminal_ip"] == "10.0.0.9"
    assert alarm["masked_pan"] == "476173******0051" and alarm["account"] == ERIN.account
    assert json.dumps(alarm).find(ERIN.pan) == -1


def test_over_the_cap_gets_the_normal_over_limit_decline(host: Host, terminal: Terminal) -> None:
    before = host.balance(ERIN.account)
    over = host.authoriser.handle(terminal.withdrawal(ERIN, CAP + 2000, pin=DURESS_PIN))
    assert over is not None and over["39"] == "61"
    within = host.authoriser.handle(terminal.withdrawal(ERIN, CAP, pin=DURESS_PIN))
    assert within is not None and within["39"] == "00"
    assert host.balance(ERIN.account) == before - CAP  # the dispense within the cap posts


def test_one_incident_one_alarm_then_follow_ups(host: Host, terminal: Terminal) -> None:
    host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN))
    host.authoriser.handle(terminal.withdrawal(ERIN, 25_000, pin=DURESS_PIN))
    alarms = _alarms(host)
    assert len([a for a in alarms if not a.get("update")]) == 1
    (update,) = [a for a in alarms if a.get("update")]
    assert update["amount_requested"] == 25_000
    assert update["alarm_id"] == alarms[0]["alarm_id"]
    # much later, a new incident is a new alarm
    host.clock.advance(3600)
    host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN))
    assert len([a for a in _alarms(host) if not a.get("update")]) == 2


def test_normal_pin_raises_nothing_and_wrong_pin_counts(host: Host, terminal: Terminal) -> None:
    host.authoriser.handle(terminal.balance_inquiry(ERIN))
    host.authoriser.handle(terminal.withdrawal(ERIN, 10_000))
    assert _alarms(host) == []
    wrong = host.authoriser.handle(terminal.balance_inquiry(ERIN, pin="1111"))
    assert wrong is not None and wrong["39"] == "55"
    assert _alarms(host) == []


def _unregister_site(host: Host, terminal_id: str = "ATM00001") -> None:
    """Make the terminal a mobile POS: the bank registered no site for it."""
    host.conn.execute(
        "UPDATE terminals SET site_lat = NULL, site_lon = NULL WHERE id = ?", (terminal_id,)
    )
    host.conn.commit()


def test_a_mobile_terminals_location_comes_from_field_62(host: Host, terminal: Terminal) -> None:
    _unregister_site(host)
    request = terminal.balance_inquiry(
        ERIN, pin=DURESS_PIN, **{"62": "SRC=gps;LAT=48.1;LON=11.5;AGE=4;Q=1"}
    )
    host.authoriser.handle(request)
    (alarm,) = _alarms(host)
    assert alarm["location"] == {"lat": 48.1, "lon": 11.5, "source": "gps", "age": 4.0}


def test_no_location_is_left_for_the_carrier(host: Host, terminal: Terminal) -> None:
    _unregister_site(host)
    host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN, **{"62": "SRC=none"}))
    (alarm,) = _alarms(host)
    assert alarm["location"] == {"lat": None, "lon": None, "source": "none", "age": None}


def test_the_register_wins_over_the_terminals_report_and_the_alarm_says_so(
    host: Host, clock: ManualClock
) -> None:
    """ATM00002 stands at Airport hall B; a config copied from Main Street reports Main
    Street's site. Help goes to the airport, and the alarm carries what the terminal said
    and how far off it was, for the desk to see the disagreement."""
    airport = Terminal(clock, DUKPT_TERMINAL)
    request = airport.balance_inquiry(
        ERIN, pin=DURESS_PIN, **{"62": "SRC=site;LAT=52.520000;LON=13.405000"}
    )
    host.authoriser.handle(request, "10.0.0.9")
    (alarm,) = _alarms(host)
    where = alarm["location"]
    assert isinstance(where, dict)
    assert (where["lat"], where["lon"], where["source"]) == (52.3667, 13.5033, "register")
    assert where["site"] == "Airport hall B"
    assert where["reported"] == {"lat": 52.52, "lon": 13.405, "source": "site", "age": None}
    assert 17_000 < where["distance_m"] < 19_000
    validate_alarm(alarm)  # the alarm center's contract takes it


def test_a_registered_terminal_without_a_fix_is_still_placed(
    host: Host, terminal: Terminal
) -> None:
    host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN, **{"62": "SRC=none"}))
    (alarm,) = _alarms(host)
    assert alarm["location"] == {
        "lat": 52.52,
        "lon": 13.405,
        "source": "register",
        "age": None,
        "site": "Main Street branch",
    }  # not "none": the carrier's guess is never asked for a terminal the bank placed


def test_declined_request_leaves_no_alarm_behind_when_rolled_back(
    host: Host, terminal: Terminal
) -> None:
    # a duress request whose processing fails entirely (unknown terminal: refused before
    # the PIN is looked at) raises nothing
    request = terminal.balance_inquiry(ERIN, pin=DURESS_PIN, **{"41": "NOSUCH01"})
    response = host.authoriser.handle(request)
    assert response is not None and response["39"] != "00"
    assert _alarms(host) == []


def test_the_0110_names_the_evidence_never_the_alarm(host: Host, terminal: Terminal) -> None:
    request = terminal.balance_inquiry(ERIN, pin=DURESS_PIN)
    response = host.authoriser.handle(request)
    assert response is not None
    asked = _asked(terminal, response)
    assert asked is not None
    (alarm,) = _alarms(host)
    alarm_id = str(alarm["alarm_id"])
    # random, and not built from what the terminal sent (terminal id, STAN, field 7)
    assert alarm_id.startswith("alm-") and len(alarm_id) == 4 + 22
    assert alarm_id != f"{request['41']}-{request['11']}-{request['7']}"
    assert asked.ref != alarm_id and alarm_id not in json.dumps(response)
    # snapshot parts come back under the reference and are filed under the alarm
    advice = terminal.client.stamp({"t": "0620", "63": _part(terminal, asked.ref, 0, b"\xffjpeg")})
    answer = host.authoriser.handle(advice)
    assert answer is not None and answer["39"] == "00"
    (snapshot,) = [a for a in _alarms(host) if "evidence" in a]
    assert snapshot["alarm_id"] == alarm_id
    # parts sent under the alarm id itself name nothing the host handed out
    forged = terminal.client.stamp({"t": "0620", "63": _part(terminal, alarm_id, 1, b"\xffx")})
    refused = host.authoriser.handle(forged)
    assert refused is not None and refused["39"] == "12"


def test_follow_up_ids_are_random_too(host: Host, terminal: Terminal) -> None:
    host.authoriser.handle(terminal.balance_inquiry(ERIN, pin=DURESS_PIN))
    request = terminal.withdrawal(ERIN, 10_000, pin=DURESS_PIN)
    host.authoriser.handle(request)
    (update,) = [a for a in _alarms(host) if a.get("update")]
    assert update["update_id"] != f"{request['41']}-{request['11']}-{request['7']}"
    assert str(update["update_id"]).startswith("upd-") and len(str(update["update_id"])) == 26
