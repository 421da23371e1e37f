"""Every failure path fails cleanly: nothing bound on either side, one clear error."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sim.payapp.client import PayappError
from sim.payapp.qr import decode_png
from sim.phone import binding as bank_app
from sim.phone.client import PhoneApiError
from sim.scenarios.binding_demo import PASSWORD, BindingWorld, wait_status
from tests.binding.conftest import ALICE_ACCOUNT, ALICE_PHONE, FRANK_ACCOUNT, Running


def session_status(world: BindingWorld, session_id: str, want: str) -> dict[str, object]:
    for _ in range(150):
        found = world.bank_sessions()[session_id]
        if found["status"] == want:
            return found
        time.sleep(0.1)
    raise AssertionError(f"bank session is {world.bank_sessions()[session_id]}, not {want}")


def test_a_wrong_sms_code_three_times_fails_the_session_on_both_sides(
    world: BindingWorld, tmp_path: Path
) -> None:
    answer = world.bind_app_qr(
        "alice.app",
        ALICE_PHONE,
        ALICE_ACCOUNT,
        tmp_path / "qr.png",
        codes=("000001", "000002", "000003"),
    )
    assert answer["status"] == "failed" and answer["tries_left"] == 0
    found = session_status(world, answer["session_id"], "failed")
    assert found["reason"] == "too many wrong SMS codes"
    assert world.bank_bindings() == [] and world.payapp_bindings() == []


def test_a_wrong_payment_password_is_refused_and_three_fail_the_session(
    world: BindingWorld, tmp_path: Path
) -> None:
    answer = world.bind_app_qr(
        "alice.app",
        ALICE_PHONE,
        ALICE_ACCOUNT,
        tmp_path / "qr.png",
        passwords=("wrong-1", "wrong-2", "wrong-3"),
    )
    assert answer["status"] == "failed"
    session_status(world, answer["session_id"], "failed")
    assert world.bank_bindings() == [] and world.payapp_bindings() == []


def test_a_second_scanner_is_refused_and_the_first_one_binds(
    world: BindingWorld, tmp_path: Path
) -> None:
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        session = bank_app.bind(client, request_id, ALICE_ACCOUNT, qr=tmp_path / "qr.png")
    address = decode_png(tmp_path / "qr.png")
    with world.app("alice.app") as alice, world.app("mallory") as mallory:
        alice.scan(address)
        with pytest.raises(PayappError) as refused:
            mallory.scan(address)
        assert refused.value.status == 409 and "another app user" in refused.value.detail
        answer = world.finish(alice, ALICE_PHONE)
        assert wait_status(alice, answer["binding_id"], "active")
        assert mallory.bindings() == []
    assert session_status(world, session["session_id"], "bound")
    assert world.settled() == []


def test_bad_input_gets_a_clear_error_and_binds_nothing(
    world: BindingWorld, tmp_path: Path
) -> None:
    with world.app("mallory") as app:
        for address, status in (
            ("not an address", 400),
            (f"{world.payapp_url}/bind/short", 400),
            (f"{world.payapp_url}/bind/{'x' * 43}", 404),
        ):
            with pytest.raises(PayappError) as bad:
                app.scan(address)
            assert bad.value.status == status
        with pytest.raises(PayappError) as unknown:
            app.confirm("no-such-session-handle")
        assert unknown.value.status == 404
        with pytest.raises(PayappError) as foreign:
            app.unbind("B0", token="t" * 43)
        assert foreign.value.status == 404
    # a reused SMS code: the step is over, the code is gone
    answer = world.bind_app_qr("alice.app", ALICE_PHONE, ALICE_ACCOUNT, tmp_path / "qr.png")
    with world.app("alice.app") as alice, world.app("mallory") as mallory:
        token = alice.state["bindings"][answer["binding_id"]]["token"]
        with pytest.raises(PayappError) as stolen:  # alice's token, shown by another user
            mallory.unbind(answer["binding_id"], token=token)
        assert stolen.value.status == 404
        assert wait_status(alice, answer["binding_id"], "active")
    # the bank app: another customer's account, or no verified session
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        with pytest.raises(PhoneApiError) as other:
            bank_app.bind(client, request_id, FRANK_ACCOUNT)
        assert other.value.status == 404
        with pytest.raises(PhoneApiError) as nobody:
            bank_app.bind(client, "not-a-session", ALICE_ACCOUNT)
        assert nobody.value.status == 403
        # a push to an app user the payment server does not know fails cleanly
        pushed = bank_app.bind(client, request_id, ALICE_ACCOUNT, push="nobody")
        assert pushed["status"] == "failed" and "no such app user" in str(pushed["reason"])
    # an unsigned request for an address, and a forged callback
    for url in (f"{world.payapp_url}/bank/sessions", f"{world.api_url}/payapp/callbacks"):
        request = urllib.request.Request(url, data=b"{}", method="POST")
        from atm_common.tls import TlsFiles, client_context

        assert world.ca is not None
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=client_context(TlsFiles(world.ca))),
        )
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            opener.open(request, timeout=5)
        assert unsigned.value.code == 401
    assert world.settled() == []
    assert len(world.bank_bindings()) == 1


def test_a_used_sms_code_cannot_be_used_again(world: BindingWorld, tmp_path: Path) -> None:
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        bank_app.bind(client, request_id, ALICE_ACCOUNT, qr=tmp_path / "qr.png")
    with world.app("alice.app") as alice, world.app("mallory") as mallory:
        handle = alice.scan(decode_png(tmp_path / "qr.png"))["session"]
        before = world.last_sms_id(alice, ALICE_PHONE)
        assert alice.confirm()["sent_to"] == "+491******0001"  # the bank's phone, masked
        code = world.sms_code(alice, ALICE_PHONE, before)
        with pytest.raises(PayappError) as not_yours:  # another user, the right code
            mallory.code(code, session=handle)
        assert not_yours.value.status == 404
        assert alice.code(code)["status"] == "verified"
        with pytest.raises(PayappError) as reused:
            alice.code(code)
        assert reused.value.status == 409 and "not the step now" in reused.value.detail
    assert world.bank_bindings() == [] and world.payapp_bindings() == []


def test_an_expired_address_fails_cleanly(running: Running, tmp_path: Path) -> None:
    world = running.start(binding_seconds=2.0)
    world.register("alice.app")
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        session = bank_app.bind(client, request_id, ALICE_ACCOUNT, qr=tmp_path / "qr.png")
    assert session["status"] == "address"
    time.sleep(2.5)
    with world.app("alice.app") as app:
        with pytest.raises(PayappError) as late:
            app.scan(decode_png(tmp_path / "qr.png"))
        assert late.value.status == 410
    found = session_status(world, session["session_id"], "failed")
    assert found["reason"] == "expired"
    assert world.bank_bindings() == [] and world.payapp_bindings() == []
    # and the password step after expiry would not bind either
    assert PASSWORD
