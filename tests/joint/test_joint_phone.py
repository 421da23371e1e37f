"""The co-owners' bank app over the phone API (FastAPI's TestClient, in process)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from atm_common.clock import ManualClock
from sim.host.api import create_app
from sim.host.cardless.phone import PhoneBank
from sim.host.joint.api import add_joint_routes
from sim.host.joint.phone import JointPhone
from tests.host.helpers import Host
from tests.joint.helpers import CODES, JOINT, TOKENS


@pytest.fixture
def api(host: Host) -> Iterator[TestClient]:
    app: FastAPI = create_app(PhoneBank(host.authoriser.cardless))
    add_joint_routes(app, JointPhone(host.conn, host.keys, host.settings, host.clock))
    with TestClient(app) as client:
        yield client


def _as(person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[person]}"}


def _transfer(
    api: TestClient, code: str, password: str = "1470", amount: int = 5_000
) -> httpx.Response:
    body = {"account": JOINT, "password": password, "code": code, "amount": amount}
    response: httpx.Response = api.post("/joint/transfers", json=body | {"to": "1000000001"})
    return response


def test_transfer_needs_another_co_owner_and_bills_all(api: TestClient, host: Host) -> None:
    before = host.balance(JOINT)
    r = _transfer(api, CODES["gina"])
    assert r.status_code == 202, r.text
    approval = r.json()
    assert approval["requester"] == "gina" and approval["status"] == "pending"
    assert host.balance(JOINT) == before
    assert [a["approval_id"] for a in api.get("/joint/approvals", headers=_as("hugo")).json()] == [
        approval["approval_id"]
    ]
    assert api.get("/joint/approvals", headers=_as("gina")).json() == []  # not her own
    url = f"/joint/approvals/{approval['approval_id']}/decision"
    own = api.post(url, json={"decision": "approve"}, headers=_as("gina"))
    assert own.status_code == 403
    stranger = api.post(url, json={"decision": "approve"}, headers=_as("jon"))
    assert stranger.status_code == 403
    ok = api.post(url, json={"decision": "approve"}, headers=_as("iris"))
    assert ok.status_code == 200 and ok.json()["status"] == "used"
    assert host.balance(JOINT) == before - 5_000
    replay = api.post(url, json={"decision": "approve"}, headers=_as("hugo"))
    assert replay.status_code == 409
    for person in ("gina", "hugo", "iris"):
        bills = [
            m for m in api.get("/joint/messages", headers=_as(person)).json() if m["kind"] == "bill"
        ]
        assert len(bills) == 1
    # one bill recorded, queued once per co-owner bound at that moment
    assert host.count("joint_bills") == 1
    assert host.count("outbox", "kind = 'bill'") == 3


def test_bad_input_changes_nothing(api: TestClient, host: Host) -> None:
    assert (
        api.post(
            "/joint/approvals/00000000000000000000/decision",
            json={"decision": "approve"},
            headers=_as("hugo"),
        ).status_code
        == 404
    )
    assert api.get("/joint/approvals", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert _transfer(api, "12a4").status_code == 422
    assert host.count("joint_approvals") == 0
    row = host.conn.execute("SELECT failures FROM joint_accounts WHERE account_id = ?", (JOINT,))
    assert row.fetchone()[0] == 0


def test_wrong_code_counts_then_locks(api: TestClient, host: Host) -> None:
    allowed = host.settings.joint.failures_allowed
    for _ in range(allowed):
        assert _transfer(api, "0000").status_code == 403
    assert _transfer(api, "0000").status_code == 423
    assert _transfer(api, CODES["gina"]).status_code == 423
    for person in ("gina", "hugo", "iris"):
        kinds = [m["kind"] for m in api.get("/joint/messages", headers=_as(person)).json()]
        assert kinds.count("joint-lock") == 1


def test_binding_needs_every_co_owner(api: TestClient, host: Host, clock: ManualClock) -> None:
    url = f"/joint/accounts/{JOINT}/owners"
    bad = api.post(
        url, json={"candidate": "jon", "identity": "ID-XX", "code": "7777"}, headers=_as("gina")
    )
    assert bad.status_code == 403
    r = api.post(
        url,
        json={"candidate": "jon", "identity": "ID-DE-0014", "code": "7777"},
        headers=_as("gina"),
    )
    assert r.status_code == 202, r.text
    ref = r.json()["approval_id"]
    decision = f"/joint/approvals/{ref}/decision"
    for person in ("gina", "hugo"):
        assert (
            api.post(decision, json={"decision": "approve"}, headers=_as(person)).status_code == 200
        )
    assert host.count("joint_owners", "account_id = ? AND person_id = 'jon'", JOINT) == 0
    last = api.post(decision, json={"decision": "approve"}, headers=_as("iris"))
    assert last.json()["status"] == "used"
    assert host.count("joint_owners", "account_id = ? AND person_id = 'jon'", JOINT) == 1
    # from now on Jon's code names him, and he is asked for approvals
    assert _transfer(api, "7777").json()["requester"] == "jon"
    assert len(api.get("/joint/approvals", headers=_as("gina")).json()) == 1


def test_a_refusal_or_expiry_binds_nobody(api: TestClient, host: Host, clock: ManualClock) -> None:
    url = f"/joint/accounts/{JOINT}/owners"
    body = {"candidate": "jon", "identity": "ID-DE-0014", "code": "7777"}
    ref = api.post(url, json=body, headers=_as("gina")).json()["approval_id"]
    decision = f"/joint/approvals/{ref}/decision"
    api.post(decision, json={"decision": "approve"}, headers=_as("gina"))
    no = api.post(decision, json={"decision": "reject"}, headers=_as("hugo"))
    assert no.json()["status"] == "rejected"
    ref = api.post(url, json=body, headers=_as("gina")).json()["approval_id"]
    clock.advance(host.settings.joint.bind_minutes * 60 + 1)
    late = api.post(
        f"/joint/approvals/{ref}/decision", json={"decision": "approve"}, headers=_as("hugo")
    )
    assert late.status_code == 410
    assert host.count("joint_owners", "person_id = 'jon'") == 0
