"""The ATM's side: cardless 0100 / 0200 / 0400 through Authoriser.handle, with the
reservation code as a PIN block bound to the phone and face templates in field 63."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atm_common.clock import ManualClock
from atm_common.face.verify import FaceTemplate
from host_link.codes import Mti, NetworkCode
from sim.host.cardless.phone import PhoneBank
from tests.cardless.helpers import (
    CLEARING,
    FEES,
    FRANK_DEBIT,
    atm_request,
    handle,
    reservation_row,
    reserve,
)
from tests.host.helpers import Host, Terminal

Templates = Callable[[str], FaceTemplate]
AMOUNT, FEE = 10_000, 200  # Frank's debit card product: 2.00 flat


def wrong(code: str) -> str:
    return "999999" if code != "999999" else "111111"


@pytest.fixture
def probe(template: Templates) -> FaceTemplate:
    """What the phone's camera saw (obama2.jpg), for the phone-side face check."""
    return template("obama2.jpg")


@pytest.mark.parametrize("atm", ["terminal", "dukpt_terminal"])
def test_the_code_collects_the_cash_once(
    atm: str, request: pytest.FixtureRequest, host: Host, bank: PhoneBank, probe: FaceTemplate
) -> None:
    terminal: Terminal = request.getfixturevalue(atm)
    tid = terminal.terminal_id
    reservation = reserve(bank, probe, amount=AMOUNT)
    code = str(reservation["code"])
    before, cash_before = host.ledger.balance(FRANK_DEBIT), host.balance(f"GL-CASH-{tid}")
    assert before.available == before.ledger - AMOUNT - FEE

    inquiry = handle(host, atm_request(terminal, code=code))
    assert inquiry["t"] == "0110" and inquiry["39"] == "00"
    assert int(inquiry["4"]) == AMOUNT and inquiry["49"] == "840"
    assert "63" not in inquiry  # no template or code data comes back

    withdrawal = atm_request(terminal, mti=Mti.FINANCIAL_REQUEST, code=code, amount=AMOUNT)
    approved = handle(host, withdrawal)
    assert approved["t"] == "0210" and approved["39"] == "00", approved
    assert approved["37"] and approved["38"]
    after = host.ledger.balance(FRANK_DEBIT)
    assert after.ledger == before.ledger - AMOUNT - FEE and after.available == after.ledger
    assert host.balance(f"GL-CASH-{tid}") == cash_before - AMOUNT
    assert host.balance(FEES) == FEE and host.balance(CLEARING) == 0
    assert reservation_row(host, reservation["reservation_id"])["status"] == "used"
    assert host.ledger.check() == []

    # A repeat of the 0200 gets the same answer and posts nothing more.
    assert handle(host, withdrawal) == approved
    assert host.ledger.balance(FRANK_DEBIT) == after
    # The code is spent: the same code again finds no reservation.
    assert handle(host, atm_request(terminal, code=code))["39"] == "14"


def test_wrong_codes_55_55_then_75_cancels_and_releases(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal
) -> None:
    before = host.ledger.balance(FRANK_DEBIT)
    reservation = reserve(bank, probe)
    bad = wrong(str(reservation["code"]))
    codes = [handle(host, atm_request(terminal, code=bad))["39"] for _ in range(3)]
    assert codes == ["55", "55", "75"]
    row = reservation_row(host, reservation["reservation_id"])
    assert row["status"] == "cancelled" and row["attempts"] == 3
    assert host.ledger.balance(FRANK_DEBIT) == before  # the hold is voided
    hold = host.conn.execute(
        "SELECT status FROM transfers WHERE id = ?", (row["hold_transfer_id"],)
    ).fetchone()
    assert hold[0] == "voided"
    assert handle(host, atm_request(terminal, code=str(reservation["code"])))["39"] == "14"
    assert host.ledger.check() == []


def test_face_at_the_atm(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal, template: Templates
) -> None:
    reservation = reserve(bank, probe, method="face")
    assert reservation["code"] is None  # nothing to type
    genuine = template("obama3.jpg").to_text()
    impostor = template("biden.jpg").to_text()
    assert handle(host, atm_request(terminal, mode="face", template=impostor))["39"] == "55"
    assert handle(host, atm_request(terminal, mode="face"))["39"] == "55"  # no FT sent
    ok = handle(host, atm_request(terminal, mode="face", template=genuine))
    assert ok["39"] == "00" and int(ok["4"]) == AMOUNT
    approved = handle(
        host,
        atm_request(
            terminal, mti=Mti.FINANCIAL_REQUEST, mode="face", template=genuine, amount=AMOUNT
        ),
    )
    assert approved["39"] == "00"
    row = reservation_row(host, reservation["reservation_id"])
    assert row["status"] == "used" and row["attempts"] == 2
    events = [
        r[0]
        for r in host.conn.execute(
            "SELECT kind FROM cardless_events WHERE reservation_id = ? ORDER BY id",
            (reservation["reservation_id"],),
        )
    ]
    assert events == [
        "reserved",
        "atm_check_failed",
        "atm_check_failed",
        "atm_verified",
        "withdrawn",
    ]


def test_both_needs_code_and_face_and_the_method_must_match(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal, template: Templates
) -> None:
    reservation = reserve(bank, probe, method="both")
    code, genuine = str(reservation["code"]), template("obama3.jpg").to_text()
    assert handle(host, atm_request(terminal, mode="code", code=code))["39"] == "55"  # mode
    assert handle(host, atm_request(terminal, mode="both", code=code))["39"] == "55"  # no face
    ok = handle(host, atm_request(terminal, mode="both", code=code, template=genuine))
    assert ok["39"] == "00"
    damaged = genuine[:-6] + ("AAAAAA" if not genuine.endswith("AAAAAA") else "BBBBBB")
    assert (
        handle(host, atm_request(terminal, mode="both", code=code, template=damaged))["39"] == "30"
    )  # a damaged template is a format error, not a wrong face: not counted
    assert reservation_row(host, reservation["reservation_id"])["attempts"] == 2


def test_0200_rules(host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal) -> None:
    reservation = reserve(bank, probe)
    code = str(reservation["code"])
    wd = Mti.FINANCIAL_REQUEST
    # Not the reserved amount, or another currency: 13, nothing counted.
    assert (
        handle(host, atm_request(terminal, mti=wd, code=code, amount=AMOUNT + 1_000))["39"] == "13"
    )
    assert handle(host, atm_request(terminal, code=code, over={"49": "978"}))["39"] == "13"
    # Without credentials, only after this ATM's passed inquiry (and not from another ATM).
    assert handle(host, atm_request(terminal, mti=wd, amount=AMOUNT))["39"] == "55"
    assert handle(host, atm_request(terminal, code=code))["39"] == "00"
    assert handle(host, atm_request(terminal, mti=wd, amount=AMOUNT))["39"] == "00"
    assert reservation_row(host, reservation["reservation_id"])["attempts"] == 1


def test_unknown_phone_malformed_field_63_and_unknown_terminal(
    host: Host, terminal: Terminal
) -> None:
    assert handle(host, atm_request(terminal, code="123456", phone="+4915199999999"))["39"] == "14"
    assert (
        handle(host, atm_request(terminal, code="123456", over={"63": "CL=1;PH=12"}))["39"] == "30"
    )
    assert handle(host, atm_request(terminal, code="123456", over={"41": "ATM09999"}))["39"] == "58"


def test_expiry_releases_the_hold(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal, clock: ManualClock
) -> None:
    before = host.ledger.balance(FRANK_DEBIT)
    first = reserve(bank, probe)
    clock.advance(60 * 60 + 1)  # hold_minutes = 60 in the demo seed
    assert handle(host, atm_request(terminal, code=str(first["code"])))["39"] == "54"
    assert reservation_row(host, first["reservation_id"])["status"] == "expired"
    assert host.ledger.balance(FRANK_DEBIT) == before
    assert handle(host, atm_request(terminal, code=str(first["code"])))["39"] == "54"

    # Without any access, the periodic sweep expires it.
    second = reserve(bank, probe)
    clock.advance(30 * 60)
    assert host.authoriser.cardless.sweep() == 0
    assert host.ledger.balance(FRANK_DEBIT).available < before.available
    clock.advance(30 * 60)
    assert host.authoriser.cardless.sweep() == 1
    assert reservation_row(host, second["reservation_id"])["status"] == "expired"
    assert host.ledger.balance(FRANK_DEBIT) == before
    assert host.ledger.check() == []


def test_reversals_refund_what_was_not_dispensed(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal
) -> None:
    start = host.ledger.balance(FRANK_DEBIT)
    cash = host.balance("GL-CASH-ATM00001")

    # Nothing dispensed: the amount and the fee come back.
    first = reserve(bank, probe)
    code = str(first["code"])
    assert handle(host, atm_request(terminal, code=code))["39"] == "00"
    withdrawal = atm_request(terminal, mti=Mti.FINANCIAL_REQUEST, code=code, amount=AMOUNT)
    assert handle(host, withdrawal)["39"] == "00"
    reversal = terminal.reversal(withdrawal)
    answer = handle(host, reversal)
    assert answer["t"] == "0410" and answer["39"] == "00"
    assert host.ledger.balance(FRANK_DEBIT) == start
    assert host.balance("GL-CASH-ATM00001") == cash and host.balance(FEES) == 0
    assert reservation_row(host, first["reservation_id"])["status"] == "refunded"
    assert reservation_row(host, first["reservation_id"])["refunded"] == AMOUNT + FEE
    assert handle(host, terminal.reversal(withdrawal))["39"] == "00"  # again: nothing more
    assert host.ledger.balance(FRANK_DEBIT) == start

    # Part dispensed: the rest comes back, the fee stays.
    second = reserve(bank, probe)
    code = str(second["code"])
    assert handle(host, atm_request(terminal, code=code))["39"] == "00"
    withdrawal = atm_request(terminal, mti=Mti.FINANCIAL_REQUEST, code=code, amount=AMOUNT)
    assert handle(host, withdrawal)["39"] == "00"
    advice = terminal.reversal(withdrawal, dispensed=4_000)
    assert advice["t"] == "0420"
    assert handle(host, advice)["39"] == "00"
    assert host.ledger.balance(FRANK_DEBIT).ledger == start.ledger - 4_000 - FEE
    assert host.balance("GL-CASH-ATM00001") == cash - 4_000
    assert host.balance(FEES) == FEE
    row = reservation_row(host, second["reservation_id"])
    assert row["status"] == "refunded" and row["refunded"] == AMOUNT - 4_000
    assert host.ledger.check() == []


def test_terminals_status_and_cash_follow_their_messages(
    host: Host, bank: PhoneBank, probe: FaceTemplate, terminal: Terminal
) -> None:
    def row() -> tuple[str, int]:
        r = host.conn.execute(
            "SELECT status, cash_on_hand FROM terminals WHERE id = 'ATM00001'"
        ).fetchone()
        return r[0], r[1]

    assert row() == ("in_service", 1_000_000)  # the key exchange was heard
    reservation = reserve(bank, probe)
    code = str(reservation["code"])
    handle(host, atm_request(terminal, code=code))
    handle(host, atm_request(terminal, mti=Mti.FINANCIAL_REQUEST, code=code, amount=AMOUNT))
    assert row() == ("in_service", 1_000_000 - AMOUNT)
    handle(host, terminal.client.stamp({"t": "0800", "70": NetworkCode.SIGN_OFF}))
    assert row()[0] == "signed_off"
    handle(host, terminal.client.stamp({"t": "0800", "70": NetworkCode.SIGN_ON}))
    assert row()[0] == "in_service"
    assert host.conn.execute("SELECT last_seen FROM terminals WHERE id = 'ATM00001'").fetchone()[0]
