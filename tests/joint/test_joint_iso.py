"""The ATM side of a joint account, through the authoriser: code, 09, approval, bill, lock."""

from __future__ import annotations

import json
import subprocess
import sys

from atm_common.clock import ManualClock
from host_link.joint import parse_field61
from sim.host.joint.notices import Refusal
from tests.host.helpers import Host, Terminal
from tests.joint.helpers import (
    CODES,
    GINA,
    GINA_SAVINGS,
    JOINT,
    LOCKABLE,
    code_field,
    handle,
    joint_withdrawal,
)


def _outbox(host: Host, kind: str, purpose: str | None = None) -> list[dict[str, object]]:
    rows = host.conn.execute("SELECT payload FROM outbox WHERE kind = ?", (kind,)).fetchall()
    out = [json.loads(r[0]) for r in rows]
    return [p for p in out if purpose is None or p.get("purpose") == purpose]


def test_pin_alone_asks_for_the_personal_code(host: Host, terminal: Terminal) -> None:
    response = handle(host, terminal.balance_inquiry(GINA))
    assert response["39"] == "1A"
    verified = handle(
        host, terminal.balance_inquiry(GINA, **{"61": code_field(terminal, GINA, CODES["gina"])})
    )
    assert verified["39"] == "00"


def test_withdrawal_waits_for_approval_then_debits_and_bills_everyone(
    host: Host, terminal: Terminal
) -> None:
    before = host.balance(JOINT)
    first = handle(host, joint_withdrawal(terminal, GINA, 10_000, CODES["hugo"]))
    assert first["39"] == "09"
    ref = (parse_field61(first["61"]) or {})["AR"]
    assert host.balance(JOINT) == before  # nothing debited while waiting
    approvals = _outbox(host, "sms", "joint-approval")
    assert sorted(str(p["person"]) for p in approvals) == ["gina", "iris"]  # not the asker
    book = host.authoriser.joint.book
    try:
        book.decide(ref, "hugo", True)
    except Refusal as refusal:
        assert refusal.status == 403  # the requester (named by the code) cannot approve
    else:
        raise AssertionError("the requester approved their own request")
    poll = handle(host, joint_withdrawal(terminal, GINA, 10_000, CODES["hugo"], AR=ref))
    assert poll["39"] == "09"
    book.decide(ref, "iris", True)
    done = handle(host, joint_withdrawal(terminal, GINA, 10_000, CODES["hugo"], AR=ref))
    assert done["39"] == "00"
    assert host.balance(JOINT) == before - 10_000
    bills = _outbox(host, "bill")
    assert sorted(str(b["person"]) for b in bills) == ["gina", "hugo", "iris"]
    assert all(b["amount"] == 10_000 and int(str(b["points"])) > 0 for b in bills)
    again = handle(host, joint_withdrawal(terminal, GINA, 10_000, CODES["hugo"], AR=ref))
    assert again["39"] == "J4"  # one approval, one operation


def test_other_amount_rejection_expiry_and_cancel(
    host: Host, terminal: Terminal, clock: ManualClock
) -> None:
    before = host.balance(JOINT)
    ref = parse_field61(handle(host, joint_withdrawal(terminal, GINA, 5_000, CODES["gina"]))["61"])
    assert ref is not None
    other = handle(host, joint_withdrawal(terminal, GINA, 9_000, CODES["gina"], AR=ref["AR"]))
    assert other["39"] == "J4"  # bound to the amount
    host.authoriser.joint.book.decide(ref["AR"], "hugo", False)
    rejected = handle(host, joint_withdrawal(terminal, GINA, 5_000, CODES["gina"], AR=ref["AR"]))
    assert rejected["39"] == "J2"
    ref2 = parse_field61(handle(host, joint_withdrawal(terminal, GINA, 5_000, CODES["gina"]))["61"])
    assert ref2 is not None
    clock.advance(host.settings.joint.approval_seconds + 1)
    expired = handle(host, joint_withdrawal(terminal, GINA, 5_000, CODES["gina"], AR=ref2["AR"]))
    assert expired["39"] == "J3"
    waiting = joint_withdrawal(terminal, GINA, 5_000, CODES["gina"])
    ref3 = parse_field61(handle(host, waiting)["61"])
    assert ref3 is not None
    assert handle(host, terminal.reversal(waiting))["39"] == "00"  # the cancel key
    status = host.authoriser.joint.book.approval(ref3["AR"])["status"]
    assert status == "cancelled"
    assert host.balance(JOINT) == before and host.available(JOINT) == before


def test_wrong_codes_lock_and_tell_every_co_owner(host: Host, terminal: Terminal) -> None:
    card = GINA_SAVINGS
    for _ in range(host.settings.joint.failures_allowed):
        r = handle(
            host, terminal.balance_inquiry(card, **{"61": code_field(terminal, card, "0000")})
        )
        assert r["39"] == "55"
    locked = handle(
        host, terminal.balance_inquiry(card, **{"61": code_field(terminal, card, "0000")})
    )
    assert locked["39"] == "J1"
    locks = _outbox(host, "sms", "joint-lock")
    assert sorted(str(p["person"]) for p in locks) == ["gina", "hugo", "iris"]
    right = handle(
        host, terminal.balance_inquiry(card, **{"61": code_field(terminal, card, "3692")})
    )
    assert right["39"] == "J1"  # even the right values
    assert all(p["account"] == LOCKABLE for p in locks)


def test_malformed_field_61_changes_nothing(host: Host, terminal: Terminal) -> None:
    response = handle(host, terminal.withdrawal(GINA, 5_000, **{"61": "CB=;;=="}))
    assert response["39"] == "30"
    bad_amount = joint_withdrawal(terminal, GINA, 5_000, CODES["gina"]) | {"4": "00000000005x"}
    assert handle(host, bad_amount)["39"] in ("13", "30")
    unknown = joint_withdrawal(terminal, GINA, 5_000, CODES["gina"], AR="0" * 20)
    assert handle(host, unknown)["39"] == "J4"
    assert host.count("joint_approvals") == 0


def test_balance_waits_and_status_inquiries_move_nothing(host: Host, terminal: Terminal) -> None:
    def inquiry(**more: str) -> dict[str, str]:
        field = code_field(terminal, GINA, CODES["gina"], **more)
        return handle(host, terminal.balance_inquiry(GINA, **{"61": field}))

    first = inquiry(OP="B")
    assert first["39"] == "09" and "54" not in first
    ref = (parse_field61(first["61"]) or {})["AR"]
    status = inquiry(AR=ref, ST="1")
    assert status["39"] == "09" and int((parse_field61(status["61"]) or {})["EX"]) > 0
    host.authoriser.joint.book.decide(ref, "hugo", True)
    approved = inquiry(AR=ref, ST="1")
    assert approved["39"] == "00" and "54" not in approved  # a status, not the balance
    assert _outbox(host, "bill") == []
    shown = inquiry(AR=ref, OP="B")
    assert shown["39"] == "00" and "54" in shown
    bills = _outbox(host, "bill")
    assert len(bills) == 3 and {b["operation"] for b in bills} == {"balance"}


def test_wrong_passwords_count_on_the_account(host: Host, terminal: Terminal) -> None:
    card = GINA_SAVINGS
    codes = []
    for _ in range(host.settings.joint.failures_allowed + 1):
        codes.append(handle(host, terminal.balance_inquiry(card, pin="9999"))["39"])
    assert codes == ["55", "55", "J1"]
    assert len(_outbox(host, "sms", "joint-lock")) == 3


def test_the_bank_unlocks_with_atm_joint_unlock(host: Host, terminal: Terminal) -> None:
    card = GINA_SAVINGS
    wrong = {"61": code_field(terminal, card, "0000")}
    for _ in range(host.settings.joint.failures_allowed + 1):
        handle(host, terminal.balance_inquiry(card, **wrong))
    assert handle(host, terminal.balance_inquiry(card))["39"] == "J1"

    def unlock(account: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "atm", "joint-unlock", "--db", str(host.path), account]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    done = unlock(LOCKABLE)
    assert done.returncode == 0, done.stderr
    assert handle(host, terminal.balance_inquiry(card))["39"] == "1A"  # usable again
    assert len(_outbox(host, "sms", "joint-unlock")) == 3
    again = unlock(LOCKABLE)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1  # usage
    assert "not locked" in again.stderr
    assert "not a joint account" in unlock("1000000001").stderr
