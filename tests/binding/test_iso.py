"""The host's side of binding at the ATM (0100 929000, field 48) and the payment
server's callbacks, in process: refusals change nothing, repeats change nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from host_link.binding import parse_status
from host_link.codec import Message
from sim.host.binding.desk import BindingDesk
from sim.host.cardless.errors import Conflict
from sim.host.outbox import entries
from terminal import transactions
from tests.host.helpers import ALICE, BOB, CARDS, Card, Host, Terminal, card_data, open_host

CALLBACK = "https://127.0.0.1:1/payapp/callbacks"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    host = open_host(tmp_path / "host.db", ManualClock(dt.datetime(2026, 5, 1, tzinfo=dt.UTC)))
    host.authoriser.binding.callback_url = CALLBACK
    return host


@pytest.fixture
def term(host: Host) -> Terminal:
    term = Terminal(host.clock)
    term.key_exchange(host)
    return term


def bind(
    host: Host, term: Terminal, card: Card, session: str | None = None, **over: str
) -> tuple[Message, Message]:
    block, ksn = term.pin_block(card, over.pop("pin", None))
    message = transactions.payapp_binding(term.config, card_data(card), block, ksn, session)
    request = term.client.stamp({**message, **over})
    response = host.authoriser.handle(request)
    assert response is not None
    return request, response


def sessions(host: Host) -> int:
    return host.count("binding_sessions")


def test_a_binding_opens_once_and_its_request_carries_no_account_number(
    host: Host, term: Terminal
) -> None:
    request, response = bind(host, term, ALICE)
    assert response["39"] == "00"
    status = parse_status(response["48"])
    assert status["ST"] == "requested" and "A" not in status
    assert host.authoriser.handle(request) == response  # a repeat: the stored answer
    assert sessions(host) == 1
    (queued,) = [e for e in entries(host.conn) if e.kind == "binding"]
    assert queued.destination == "payapp" and queued.payload["masked_account"] == "******0001"
    assert ALICE.account not in str(queued.payload) and ALICE.pan not in str(queued.payload)
    assert queued.payload["phone"] == "+4915100000001"  # the code goes to the bank's phone
    host.authoriser.binding.addressed(status["S"], "https://pay/bind/" + "x" * 43)
    _, polled = bind(host, term, ALICE, status["S"])
    assert parse_status(polled["48"])["A"].endswith("x" * 43)


def test_refusals_open_nothing(host: Host, term: Terminal) -> None:
    _, wrong_pin = bind(host, term, ALICE, pin="9999")
    assert wrong_pin["39"] == "55" and "48" not in wrong_pin
    _, malformed = bind(host, term, ALICE, **{"48": "X=1"})
    assert malformed["39"] == "30"
    _, unknown = bind(host, term, ALICE, "u" * 32)
    assert unknown["39"] == "12"
    _, opened = bind(host, term, ALICE)
    _, foreign = bind(host, term, BOB, parse_status(opened["48"])["S"])  # Alice's session
    assert foreign["39"] == "12" and "48" not in foreign
    assert sessions(host) == 1
    _, duress = bind(host, term, CARDS["erin"], pin="0852")  # the personal-safety PIN
    assert duress["39"] == "05" and host.count("outbox", "kind = 'alarm'") == 1
    assert sessions(host) == 1
    host.authoriser.binding.callback_url = ""  # no payment server at this bank
    _, off = bind(host, term, ALICE)
    assert off["39"] == "91" and sessions(host) == 1


def test_callbacks_are_idempotent_and_a_late_bound_is_refused(host: Host, term: Terminal) -> None:
    desk: BindingDesk = host.authoriser.binding
    _, response = bind(host, term, ALICE)
    session = parse_status(response["48"])["S"]
    desk.addressed(session, "https://pay/bind/" + "y" * 43)
    bound = {"type": "bound", "session_id": session, "binding_id": "B1", "app_user": "alice.app"}
    texts_before = host.count("outbox", "kind = 'sms'")
    assert desk.callback(bound) == {"accepted": True}
    assert desk.callback(bound) == {"accepted": True}  # the same callback again
    assert host.count("payapp_bindings") == 1
    assert host.count("outbox", "kind = 'sms'") == texts_before + 1  # one "new binding" notice
    with pytest.raises(Conflict):  # the same binding id for another session
        desk.callback({**bound, "session_id": "z" * 32})
    # a session that expired before the payment app finished is never bound
    _, response = bind(host, term, ALICE)
    late = parse_status(response["48"])["S"]
    desk.addressed(late, "https://pay/bind/" + "w" * 43)
    host.clock.advance(desk.address_seconds + 1)
    with pytest.raises(Conflict):
        desk.callback({**bound, "session_id": late, "binding_id": "B2"})
    assert host.count("payapp_bindings") == 1
    assert desk.view(late)["status"] == "expired"
