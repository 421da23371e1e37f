"""The phone's side over the HTTP API (FastAPI's TestClient: ASGI in process).

The face checks here run the real detection on the photos in sim/data/faces: obama.jpg is enrolled
by the demo seed, obama2.jpg is the genuine probe, biden.jpg the impostor.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
from fastapi.testclient import TestClient

from atm_common.clock import ManualClock
from atm_common.face.verify import load_image
from sim.host.cardless.phone import PhoneBank
from sim.host.ledger import transaction
from tests.cardless.helpers import CLEARING, FRANK_CREDIT, FRANK_DEBIT, FRANK_PHONE, face, sms_code
from tests.host.helpers import Host

R = "/cardless/requests"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def photo(name: str) -> str:
    return b64(face(name).read_bytes())


def start(api: TestClient, bank: PhoneBank) -> str:
    """Request + SMS code: a session ready for the face step."""
    created = api.post(R, json={"phone": FRANK_PHONE})
    assert created.status_code == 201, created.text
    request_id: str = created.json()["request_id"]
    assert (
        api.post(f"{R}/{request_id}/verification", json={"code": sms_code(bank)}).json()["status"]
        == "verified"
    )
    return request_id


def counts(host: Host) -> dict[str, int]:
    tables = ("reservations", "cardless_quotes", "transfers")
    return {t: host.count(t) for t in tables}


def test_the_whole_phone_flow_holds_amount_plus_fee(
    api: TestClient, bank: PhoneBank, host: Host
) -> None:
    created = api.post(R, json={"phone": "+49 151 0000 0006"})  # any spelling of the number
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    assert created.json()["status"] == "sent"
    inbox = api.get(f"/phones/{FRANK_PHONE}/messages").json()
    assert len(inbox) == 1 and inbox[0]["status"] == "pending"  # no gateway in this test
    assert "cardless" in inbox[0]["text"]

    code = sms_code(bank)
    wrong = "000000" if code != "000000" else "111111"
    refused = api.post(f"{R}/{request_id}/verification", json={"code": wrong})
    assert refused.status_code == 403 and "2 attempt(s) left" in refused.json()["detail"]
    ok = api.post(f"{R}/{request_id}/verification", json={"code": code})
    assert ok.status_code == 200 and ok.json()["status"] == "verified"

    matched = api.post(
        f"{R}/{request_id}/face", json={"consent": True, "image_base64": photo("obama2.jpg")}
    )
    assert matched.status_code == 200, matched.text
    assert matched.json()["match"] is True and "distance" not in matched.json()
    assert matched.json()["status"] == "identified"

    accounts = {a["account"]: a for a in api.get(f"{R}/{request_id}/accounts").json()}
    assert accounts[FRANK_DEBIT]["card_product"] == "debit"
    assert accounts[FRANK_CREDIT]["card_product"] == "credit"
    assert accounts[FRANK_DEBIT]["card"] == "476173******0069"

    # The fee depends on the account's card product and is shown before anything is held.
    credit = api.post(
        f"{R}/{request_id}/quotes",
        json={"account": FRANK_CREDIT, "amount": 20_000, "method": "face"},
    ).json()
    assert credit["fee"] == 300 + 200 and credit["total"] == 20_500  # 3.00 + 1 %
    before = host.ledger.balance(FRANK_DEBIT)
    quote = api.post(
        f"{R}/{request_id}/quotes",
        json={"account": FRANK_DEBIT, "amount": 20_000, "method": "code"},
    )
    assert quote.status_code == 201
    q = quote.json()
    assert (q["fee"], q["total"], q["card_product"]) == (200, 20_200, "debit")
    assert host.ledger.balance(FRANK_DEBIT) == before  # a quote holds nothing

    confirmed = api.post(f"{R}/{request_id}/reservation", json={"quote_id": q["quote_id"]})
    assert confirmed.status_code == 201, confirmed.text
    reservation = confirmed.json()
    assert reservation["status"] == "active" and reservation["code"].isdigit()
    assert (reservation["amount"], reservation["fee"], reservation["total"]) == (
        20_000,
        200,
        20_200,
    )
    after = host.ledger.balance(FRANK_DEBIT)
    assert after.ledger == before.ledger  # held, not posted
    assert after.available == before.available - 20_200
    assert host.ledger.balance(CLEARING).ledger == 0
    assert reservation["code"] in api.get(f"/phones/{FRANK_PHONE}/messages").json()[-1]["text"]
    stored = host.conn.execute("SELECT code_offset FROM reservations").fetchone()[0]
    assert stored != reservation["code"] and len(stored) == 6  # an offset, not the code

    rid = reservation["reservation_id"]
    shown = api.get(f"/cardless/reservations/{rid}").json()
    assert shown["status"] == "active" and shown["code"] is None  # the code is shown once
    replay = api.post(f"{R}/{request_id}/reservation", json={"quote_id": q["quote_id"]})
    assert replay.status_code == 409 and "already confirmed" in replay.json()["detail"]
    assert host.count("reservations") == 1

    kinds = [e["kind"] for e in api.get(f"/cardless/reservations/{rid}/events").json()]
    assert kinds == [
        "requested",
        "sms_failed",
        "sms_verified",
        "consent",
        "face_match",
        "quoted",
        "quoted",
        "reserved",
    ]

    cancelled = api.delete(f"/cardless/reservations/{rid}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert host.ledger.balance(FRANK_DEBIT) == before  # the hold is released
    again = api.delete(f"/cardless/reservations/{rid}")
    assert again.status_code == 409
    assert host.ledger.check() == []


def test_an_impostor_face_creates_nothing_and_bad_images_are_422(
    api: TestClient, bank: PhoneBank, host: Host
) -> None:
    request_id = start(api, bank)
    before = counts(host)
    impostor = api.post(
        f"{R}/{request_id}/face", json={"consent": True, "image_base64": photo("biden.jpg")}
    )
    assert impostor.status_code == 200
    body = impostor.json()
    assert body["match"] is False and set(body) == {"match", "attempts_left", "status"}
    assert body["status"] == "verified" and body["attempts_left"] == 2
    accounts = api.get(f"{R}/{request_id}/accounts")
    assert accounts.status_code == 409  # not identified: no accounts, no quote
    assert counts(host) == before

    ok, blank = cv2.imencode(".jpg", np.full((480, 640, 3), 200, dtype=np.uint8))
    assert ok
    two = [load_image(face(n)) for n in ("obama2.jpg", "biden.jpg")]
    height = min(img.shape[0] for img in two)
    side_by_side = np.hstack(
        [cv2.resize(img, (img.shape[1] * height // img.shape[0], height)) for img in two]
    )
    ok, pair = cv2.imencode(".jpg", side_by_side)
    assert ok
    bad: list[tuple[dict[str, Any], str]] = [
        ({"consent": True, "image_base64": b64(blank.tobytes())}, "no face"),
        ({"consent": True, "image_base64": b64(pair.tobytes())}, "2 faces"),
        ({"consent": True, "image_base64": b64(b"\xff\xd8\xff\xe0 not really a jpeg")}, "readable"),
        ({"consent": True, "image_base64": "%%% not base64"}, "base64"),
        ({"consent": False, "image_base64": photo("obama2.jpg")}, "consent"),
    ]
    for body_in, words in bad:
        refused = api.post(f"{R}/{request_id}/face", json=body_in)
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["detail"]
    row = host.conn.execute(
        "SELECT status, face_attempts FROM cardless_requests WHERE id = ?", (request_id,)
    ).fetchone()
    assert tuple(row) == ("verified", 1)  # only the real mismatch counted
    assert counts(host) == before


def test_bad_requests_are_clear_4xx_and_change_nothing(
    api: TestClient, bank: PhoneBank, host: Host, clock: ManualClock
) -> None:
    # An unknown number gets the same answer as a customer's (a decoy: no SMS, no match).
    assert api.post(R, json={"phone": "+4915199999999"}).status_code == 201
    assert api.post(R, json={"phone": "12ab"}).status_code == 422
    assert api.get(f"{R}/nope/accounts").status_code == 404
    assert api.get("/cardless/reservations/nope").status_code == 404
    assert api.delete("/cardless/reservations/nope").status_code == 404

    request_id = api.post(R, json={"phone": FRANK_PHONE}).json()["request_id"]
    early = api.post(
        f"{R}/{request_id}/face", json={"consent": True, "image_base64": photo("obama2.jpg")}
    )
    assert early.status_code == 409 and "verified" in early.json()["detail"]
    quote = {"account": FRANK_DEBIT, "amount": 10_000, "method": "code"}
    assert api.post(f"{R}/{request_id}/quotes", json=quote).status_code == 409

    # Three wrong SMS codes close the session; the right code is then refused too.
    code = sms_code(bank)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        assert api.post(f"{R}/{request_id}/verification", json={"code": wrong}).status_code == 403
    closed = api.post(f"{R}/{request_id}/verification", json={"code": code})
    assert closed.status_code == 403 and "too many" in closed.json()["detail"]
    assert api.get(f"{R}/{request_id}").json()["status"] == "failed"

    # An expired session: 410.
    second = api.post(R, json={"phone": FRANK_PHONE}).json()["request_id"]
    clock.advance(10 * 60 + 1)
    gone = api.post(f"{R}/{second}/verification", json={"code": sms_code(bank)})
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
    assert api.get(f"{R}/{second}").json()["status"] == "expired"
    assert host.count("reservations") == 0


def test_quote_limits_and_funds(
    api: TestClient, bank: PhoneBank, host: Host, template: Any
) -> None:
    request_id = start(api, bank)
    assert bank.face_checked(request_id, template("obama2.jpg")).match
    url = f"{R}/{request_id}/quotes"
    cases = [
        ({"account": FRANK_DEBIT, "amount": 1_000, "method": "code"}, 422),  # below min
        ({"account": FRANK_DEBIT, "amount": 60_000, "method": "code"}, 422),  # above max
        ({"account": FRANK_DEBIT, "amount": 10_500, "method": "code"}, 422),  # not notes
        ({"account": FRANK_DEBIT, "amount": 10_000, "method": "card"}, 422),  # no such method
        ({"account": "1000000001", "amount": 10_000, "method": "code"}, 404),  # Alice's
    ]
    for body, status in cases:
        assert api.post(url, json=body).status_code == status, body
    # Spend most of the credit account: amount + fee no longer fits.
    with transaction(host.conn):
        host.ledger.transfer(FRANK_CREDIT, "GL-OPENING", 140_000, kind="test")
    short = api.post(url, json={"account": FRANK_CREDIT, "amount": 10_000, "method": "face"})
    assert short.status_code == 409 and "insufficient funds" in short.json()["detail"]
    assert host.count("cardless_quotes") == 0


def test_openapi_describes_the_api(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/cardless/requests",
        "/cardless/requests/{request_id}/verification",
        "/cardless/requests/{request_id}/face",
        "/cardless/requests/{request_id}/accounts",
        "/cardless/requests/{request_id}/quotes",
        "/cardless/requests/{request_id}/reservation",
        "/cardless/reservations/{reservation_id}",
        "/cardless/reservations/{reservation_id}/events",
        "/phones/{phone}/messages",
        "/atms/route",
    } <= paths
    assert "QuoteOut" in spec["components"]["schemas"]
    assert (
        "409" in spec["paths"]["/cardless/requests/{request_id}/reservation"]["post"]["responses"]
    )
