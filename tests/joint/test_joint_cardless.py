"""A cardless reservation on a joint account: password + own code, another co-owner's
approval before anything is held, and one bill per co-owner when the cash comes out.

The real host (Authoriser on a real SQLite file, the demo seed) behind the phone API
(FastAPI's TestClient) and the ATM's ISO messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from atm_common.clock import ManualClock
from atm_common.face.verify import FaceTemplate
from host_link.codes import Mti
from sim.host.api import create_app
from sim.host.cardless.phone import PhoneBank
from sim.host.joint.api import add_joint_cardless_routes, add_joint_routes
from sim.host.joint.cardless import JointCardless
from sim.host.joint.phone import JointPhone
from tests.cardless.conftest import template
from tests.cardless.helpers import atm_request, handle, sms_code
from tests.host.helpers import Host, Terminal
from tests.joint.helpers import CODES, JOINT, TOKENS

__all__ = ["template"]

GINA_PHONE = "+4915100000011"
AMOUNT = 10_000


@pytest.fixture
def bank(host: Host) -> PhoneBank:
    # Gina's face is enrolled with Frank's template (the demo enrols only Frank)
    host.conn.execute(
        "INSERT INTO face_templates SELECT 'gina', template, source, enrolled_at"
        " FROM face_templates WHERE person_id = 'frank'"
    )
    host.conn.commit()
    return PhoneBank(host.authoriser.cardless)


@pytest.fixture
def api(host: Host, bank: PhoneBank) -> Iterator[TestClient]:
    app: FastAPI = create_app(bank, sms_inbox=True)
    joint = JointPhone(host.conn, host.keys, host.settings, host.clock)
    add_joint_routes(app, joint)
    add_joint_cardless_routes(app, JointCardless(bank, joint))
    with TestClient(app) as client:
        yield client


def _quoted(bank: PhoneBank, probe: FaceTemplate) -> tuple[str, str]:
    request_id = bank.request(GINA_PHONE)["request_id"]
    bank.verify_code(request_id, sms_code(bank, GINA_PHONE))
    assert bank.face_checked(request_id, probe).match
    quote = bank.quote(request_id, JOINT, AMOUNT, "code")
    return request_id, quote["quote_id"]


def _confirm(api: TestClient, rid: str, qid: str, code: str, pw: str = "1470") -> httpx.Response:
    body = {"quote_id": qid, "password": pw, "code": code}
    r: httpx.Response = api.post(f"/cardless/requests/{rid}/joint-reservation", json=body)
    return r


def _decide(api: TestClient, ref: str, person: str, decision: str) -> httpx.Response:
    r: httpx.Response = api.post(
        f"/joint/approvals/{ref}/decision",
        json={"decision": decision},
        headers={"Authorization": f"Bearer {TOKENS[person]}"},
    )
    return r


def _bills(host: Host) -> dict[str, int]:
    rows = host.conn.execute(
        "SELECT destination, COUNT(*) FROM outbox WHERE kind = 'bill' GROUP BY destination"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _held(host: Host) -> int:
    return host.balance(JOINT) - host.available(JOINT)


@pytest.fixture
def probe(template: Callable[[str], FaceTemplate]) -> FaceTemplate:
    return template("obama.jpg")


def test_plain_confirmation_is_refused_on_a_joint_account(
    api: TestClient, bank: PhoneBank, probe: FaceTemplate, host: Host
) -> None:
    rid, qid = _quoted(bank, probe)
    r = api.post(f"/cardless/requests/{rid}/reservation", json={"quote_id": qid})
    assert r.status_code == 403 and "password" in r.json()["detail"]
    assert host.count("reservations") == 0 and _held(host) == 0


def test_approval_freezes_and_collection_bills_every_co_owner(
    api: TestClient, bank: PhoneBank, probe: FaceTemplate, host: Host, terminal: Terminal
) -> None:
    before = host.balance(JOINT)
    rid, qid = _quoted(bank, probe)
    r = _confirm(api, rid, qid, CODES["gina"])
    assert r.status_code == 202, r.text
    pending: dict[str, Any] = r.json()
    assert pending["status"] == "awaiting_approval" and pending["reservation"] is None
    ref = pending["approval"]["approval_id"]
    assert pending["approval"]["kind"] == "cardless" and pending["approval"]["requester"] == "gina"
    assert host.count("reservations") == 0 and _held(host) == 0  # nothing held yet
    status = api.get(f"/cardless/requests/{rid}/joint-reservation").json()
    assert status["status"] == "awaiting_approval"
    assert _decide(api, ref, "gina", "approve").status_code == 403  # not her own
    assert _decide(api, ref, "hugo", "approve").json()["status"] == "used"
    status = api.get(f"/cardless/requests/{rid}/joint-reservation").json()
    assert status["status"] == "reserved", status
    fee = status["reservation"]["fee"]
    assert status["reservation"]["status"] == "active" and _held(host) == AMOUNT + fee
    assert _bills(host) == {}  # the bill comes with the cash
    code = sms_code(bank, GINA_PHONE)  # the collection code, by SMS only
    withdrawal = atm_request(
        terminal, mti=Mti.FINANCIAL_REQUEST, code=code, amount=AMOUNT, phone=GINA_PHONE
    )
    assert handle(host, withdrawal)["39"] == "00"
    assert host.balance(JOINT) == before - AMOUNT - fee
    assert _bills(host) == {f"person:{p}": 1 for p in ("gina", "hugo", "iris")}


@pytest.mark.parametrize("end", ["reject", "expire"])
def test_rejection_or_expiry_holds_nothing(
    api: TestClient,
    bank: PhoneBank,
    probe: FaceTemplate,
    host: Host,
    clock: ManualClock,
    end: str,
) -> None:
    rid, qid = _quoted(bank, probe)
    ref = _confirm(api, rid, qid, CODES["gina"]).json()["approval"]["approval_id"]
    if end == "reject":
        assert _decide(api, ref, "iris", "reject").json()["status"] == "rejected"
    else:
        clock.advance(host.settings.joint.approval_seconds + 1)
        assert _decide(api, ref, "iris", "approve").status_code == 410
    status = api.get(f"/cardless/requests/{rid}/joint-reservation").json()
    assert status["status"] == ("rejected" if end == "reject" else "expired")
    assert status["reservation"] is None
    assert host.count("reservations") == 0 and _held(host) == 0 and _bills(host) == {}


def test_wrong_or_another_co_owners_code_counts_then_locks(
    api: TestClient, bank: PhoneBank, probe: FaceTemplate, host: Host
) -> None:
    rid, qid = _quoted(bank, probe)
    assert _confirm(api, rid, qid, "12a4").status_code == 422  # malformed: not counted
    assert _confirm(api, rid, qid, CODES["gina"], pw="0000").status_code == 403
    r = _confirm(api, rid, qid, CODES["hugo"])  # a code, but not the requester's own
    assert r.status_code == 403 and "before the lock" in r.json()["detail"]
    assert _confirm(api, rid, qid, "0000").status_code == 423
    assert _confirm(api, rid, qid, CODES["gina"]).status_code == 423
    assert host.count("joint_approvals") == 0 and host.count("reservations") == 0
    assert _held(host) == 0
