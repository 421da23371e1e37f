"""Throttles and lockout in process (the real-process attacks are in
tests/security/test_phone_abuse.py): the backoff's arithmetic, one failure count per phone
for the phone and the ATMs, a locked number and a throttled ATM refused before any check,
decoy sessions for numbers that are nobody's, the seed's bound on the lockout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from atm_common.face.verify import FaceTemplate
from sim.host import db
from sim.host.cardless.errors import Forbidden, Locked, TooManyRequests
from sim.host.cardless.phone import PhoneBank
from sim.host.cardless.throttle import Backoff, Limiter
from sim.host.cardless.tokens import fingerprint, redact
from sim.host.ledger import Ledger
from sim.host.seed import load_seed
from tests.cardless.helpers import FRANK_PHONE, atm_request, handle, reserve, sms_code
from tests.host.helpers import DEMO_SEED, Host, Terminal

Templates = Callable[[str], FaceTemplate]


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_the_backoff_doubles_after_the_free_events_and_forgets_old_ones() -> None:
    clock = ManualClock()
    limiter = Limiter(Backoff(free=2, base=10, cap=35, window=100), clock, "tries")
    waits = []
    for _ in range(5):
        limiter.check("k")
        limiter.hit("k")
        waits.append(limiter.retry_after("k"))
        clock.advance(limiter.retry_after("k"))
    assert waits == [0, 10, 20, 35, 35]  # free, free, then 10, 20, capped at 35
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("k")
        limiter.check("k")
    assert refused.value.retry_after == 35 and refused.value.status == 429
    assert limiter.retry_after("other") == 0  # per key
    clock.advance(100)
    assert limiter.retry_after("k") == 0  # the window forgot them


def test_ids_are_logged_as_fingerprints_only() -> None:
    token = "0123456789abcdef0123"
    assert fingerprint(token) == fingerprint(token) != fingerprint("0" * 20)
    assert token not in fingerprint(token) and fingerprint(None) == "-"
    assert redact(f"already confirmed: reservation {token}") == (
        f"already confirmed: reservation {fingerprint(token)}"
    )


def test_failures_at_the_atm_and_on_the_phone_count_together_and_lock_the_number(
    host: Host, bank: PhoneBank, terminal: Terminal, template: Templates
) -> None:
    assert bank.settings.lockout_failures == 10
    # A reservation cancelled at an ATM by wrong codes: three failures for the number.
    code = str(reserve(bank, template("obama2.jpg"))["code"])
    bad = "999999" if code != "999999" else "111111"
    assert [handle(host, atm_request(terminal, code=bad))["39"] for _ in range(3)] == [
        "55",
        "55",
        "75",
    ]
    # Then wrong SMS codes over new sessions: the tenth failure in a row locks it.
    sessions = []
    for _ in range(3):
        request_id = bank.request(FRANK_PHONE)["request_id"]
        sessions.append((request_id, sms_code(bank)))
    for request_id, right in sessions[:2]:
        for _ in range(3):
            with pytest.raises(Forbidden):
                bank.verify_code(request_id, wrong(right))
    last, right = sessions[2]
    with pytest.raises(Locked):
        bank.verify_code(last, wrong(right))
    with pytest.raises(Locked):  # from now on nothing is compared
        bank.verify_code(last, right)
    with pytest.raises(Locked):
        bank.request(FRANK_PHONE)
    assert handle(host, atm_request(terminal, code="123456"))["39"] == "57"
    bank.guard.unlock("4915100000006")  # the bank, after speaking to Frank
    assert bank.verify_code(last, right)["status"] == "verified"


def test_an_atm_with_too_many_failures_is_throttled_before_any_check(
    host: Host, terminal: Terminal, clock: ManualClock
) -> None:
    nobody = [f"+49151888{n:05d}" for n in range(11)]
    answers = [handle(host, atm_request(terminal, code="123456", phone=p))["39"] for p in nobody]
    assert answers == ["14"] * 10 + ["91"]  # trying number after number
    clock.advance(30)
    assert handle(host, atm_request(terminal, code="123456", phone=nobody[0]))["39"] == "14"
    assert handle(host, atm_request(terminal, code="123456", phone=nobody[0]))["39"] == "91"


def test_a_number_nobody_has_gets_a_decoy_session(host: Host, bank: PhoneBank) -> None:
    real, decoy = bank.request(FRANK_PHONE), bank.request("+4915199999999")
    assert real.keys() == decoy.keys() and decoy["status"] == "sent"
    assert bank.messages("+4915199999999") == []  # nobody is texted
    assert host.count("cardless_requests") == 1 and host.count("cardless_decoys") == 1
    refused = []
    for request_id in (real["request_id"], decoy["request_id"]):
        with pytest.raises(Forbidden) as refusal:
            bank.verify_code(request_id, wrong(sms_code(bank)))
        refused.append(str(refusal.value))
    assert refused[0] == refused[1] == "wrong code; 2 attempt(s) left"
    assert bank.status(decoy["request_id"])["status"] == "sent"


def test_the_seed_bounds_the_lockout_at_100(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    text = DEMO_SEED.read_text()
    seed.write_text(text.replace("[cardless]", "[cardless]\nlockout_failures = 101", 1))
    conn = db.connect(tmp_path / "host.db")
    try:
        with pytest.raises(ConfigError, match="lockout_failures"):
            load_seed(conn, seed, Ledger(conn, ManualClock()))
    finally:
        conn.close()


def test_face_mismatches_count_against_the_number(
    bank: PhoneBank, template: Templates, host: Host
) -> None:
    request_id = bank.request(FRANK_PHONE)["request_id"]
    bank.verify_code(request_id, sms_code(bank))
    result = bank.face_checked(request_id, template("biden.jpg"))
    assert (result.match, result.attempts_left) == (False, 2)
    failures = host.conn.execute("SELECT failures FROM cardless_phone_guard").fetchone()[0]
    assert failures == 1
