"""The payment server killed in the middle (SIGKILL): no half binding on either side, and
the flow completes when it comes back, from its own database and the bank's outbox."""

from __future__ import annotations

import time
from pathlib import Path

from sim.payapp.qr import decode_png
from sim.phone import binding as bank_app
from sim.scenarios.binding_demo import wait_status
from tests.binding.conftest import ALICE_ACCOUNT, ALICE_PHONE, Running


def crash_and_restart(running: Running) -> None:
    assert running.payapp is not None
    port = running.payapp.port
    running.payapp.process.kill()  # no goodbye: what a power cut does
    running.payapp.process.wait()
    running.start_payapp(port)  # same port: the bank knows it by URL


def test_killed_after_the_code_was_sent_the_binding_completes_on_restart(
    running: Running, tmp_path: Path
) -> None:
    world = running.start()
    world.register("alice.app")
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        session = bank_app.bind(client, request_id, ALICE_ACCOUNT, qr=tmp_path / "qr.png")
    with world.app("alice.app") as app:
        app.scan(decode_png(tmp_path / "qr.png"))
        before = world.last_sms_id(app, ALICE_PHONE)
        app.confirm()
        code = world.sms_code(app, ALICE_PHONE, before)
    crash_and_restart(running)
    assert world.bank_bindings() == [] and world.payapp_bindings() == []
    with world.app("alice.app") as app:
        assert app.code(code)["status"] == "verified"
        answer = app.password("pay-123456")
        assert wait_status(app, answer["binding_id"], "active")
    assert world.bank_sessions()[session["session_id"]]["status"] == "bound"
    assert world.settled() == []


def test_down_when_the_bank_asks_for_an_address_the_outbox_completes_it_later(
    running: Running, tmp_path: Path
) -> None:
    world = running.start()
    world.register("alice.app")
    assert running.payapp is not None
    port = running.payapp.port
    running.payapp.process.kill()
    running.payapp.process.wait()
    client, request_id = world.bank_session(ALICE_PHONE)
    with client:
        waiting = bank_app.bind(client, request_id, ALICE_ACCOUNT)  # waits 10 s, in vain
        assert waiting["status"] == "requested" and waiting["address"] is None
        running.start_payapp(port)
        for _ in range(100):
            session = bank_app._call(
                client, request_id, "GET", f"/payapp/sessions/{waiting['session_id']}"
            )
            if session["status"] == "address":
                break
            time.sleep(0.1)
    assert session["status"] == "address", session
    bank_app.render_png(session["address"], tmp_path / "qr.png")
    with world.app("alice.app") as app:
        app.scan(decode_png(tmp_path / "qr.png"))
        answer = world.finish(app, ALICE_PHONE)
        assert wait_status(app, answer["binding_id"], "active")
    assert world.settled() == []
