"""The bank app's QR code and the pushed message bind end to end against real processes;
both sides agree afterwards; either side revokes and the other learns it."""

from __future__ import annotations

import json
from pathlib import Path

from sim.scenarios.binding_demo import BindingWorld, wait_status
from tests.binding.conftest import ALICE_ACCOUNT, ALICE_PHONE, FRANK_ACCOUNT, FRANK_PHONE


def test_bank_app_qr_binds_and_both_sides_agree(world: BindingWorld, tmp_path: Path) -> None:
    answer = world.bind_app_qr("alice.app", ALICE_PHONE, ALICE_ACCOUNT, tmp_path / "qr.png")
    assert answer["status"] == "pending" and answer["account"] == "******0001"
    assert "binding_token" not in answer  # the app keeps it in its state, never prints it
    with world.app("alice.app") as app:
        assert wait_status(app, answer["binding_id"], "active")
    assert world.settled() == []
    (bank,) = world.bank_bindings()
    assert bank["account_id"] == ALICE_ACCOUNT and bank["app_user"] == "a*******p"
    assert bank["path"] == "app_qr" and bank["status"] == "active"
    # the app's state holds an opaque token and a masked account: never the number
    state = (world.state / "alice.app.json").read_text()
    assert ALICE_ACCOUNT not in state and json.loads(state)["bindings"][answer["binding_id"]]
    assert (world.state / "alice.app.json").stat().st_mode & 0o077 == 0


def test_pushed_message_binds_then_the_app_revokes_and_the_bank_learns_it(
    world: BindingWorld,
) -> None:
    answer = world.bind_push("alice.app", FRANK_PHONE, FRANK_ACCOUNT)
    assert answer["status"] == "pending"
    with world.app("alice.app") as app:
        assert wait_status(app, answer["binding_id"], "active")
        assert world.settled() == []
        assert world.bank_bindings()[0]["path"] == "push"
        app.unbind(answer["binding_id"])
    for _ in range(100):
        if world.bank_bindings()[0]["status"] == "revoked":
            break
        import time

        time.sleep(0.1)
    assert world.bank_bindings()[0]["revoked_by"] == "app"
    assert world.settled() == []


def test_the_bank_revokes_and_the_payment_server_learns_it(
    world: BindingWorld, tmp_path: Path
) -> None:
    answer = world.bind_app_qr("alice.app", ALICE_PHONE, ALICE_ACCOUNT, tmp_path / "qr.png")
    with world.app("alice.app") as app:
        assert wait_status(app, answer["binding_id"], "active")
    client, request_id = world.bank_session(ALICE_PHONE)
    from sim.phone import binding as bank_app

    with client:
        revoked = bank_app.step(
            client,
            type(
                "A",
                (),
                {"step": "unbind", "request_id": request_id, "binding_id": answer["binding_id"]},
            )(),
        )
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == "bank"
    with world.app("alice.app") as app:
        assert wait_status(app, answer["binding_id"], "revoked")
    assert world.settled() == []
