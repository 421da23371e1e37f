"""The alarm center over real HTTP on 127.0.0.1: contract, idempotency, conflicts, limits,
durability, who may post and who may read."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest

from sim.alarm_center import (
    AlarmCenter,
    AlarmStoreError,
    format_alarms,
    format_conflicts,
    list_alarms,
    list_conflicts,
    serve,
)
from sim.service_auth import new_host_key_file, new_token_file

from .signed import KEY, TOKEN, call


def make_alarm(**changes: Any) -> dict[str, Any]:
    alarm: dict[str, Any] = {
        "alarm_id": "T0000001-000123-0101120000",
        "time": "2026-01-01T12:00:00+00:00",
        "terminal_id": "T0000001",
        "terminal_ip": "10.1.2.3",
        "location": {"lat": 52.52, "lon": 13.405, "source": "gps", "age": 3},
        "masked_pan": "476173******0010",
        "account": "1000000001",
        "amount_requested": 20000,
    }
    alarm.update(changes)
    return alarm


def open_center(db: Path, port: int = 0) -> AlarmCenter:
    return AlarmCenter(db, port=port, host_key=KEY, operator_token=TOKEN)


@pytest.fixture
def center(tmp_path: Path) -> Any:
    with open_center(tmp_path / "alarms.db") as running:
        yield running


def test_valid_alarm_is_stored_and_listed(center: AlarmCenter) -> None:
    status, answer = call(center.url + "/alarms", make_alarm())
    assert (status, answer) == (201, {"alarm_id": make_alarm()["alarm_id"], "status": "stored"})
    status, listing = call(center.url + "/alarms")
    assert status == 200
    [stored] = listing["alarms"]
    assert {k: stored[k] for k in make_alarm()} == {
        **make_alarm(),
        "location": {"lat": 52.52, "lon": 13.405, "source": "gps", "age": 3.0},
    }
    assert stored["evidence"] == []
    assert call(center.url + "/health") == (200, {"status": "ok"})


def test_identical_repeat_is_acknowledged_and_stored_once(center: AlarmCenter) -> None:
    assert call(center.url + "/alarms", make_alarm())[0] == 201
    status, answer = call(center.url + "/alarms", make_alarm())
    assert (status, answer) == (200, {"alarm_id": make_alarm()["alarm_id"], "status": "duplicate"})
    assert len(call(center.url + "/alarms")[1]["alarms"]) == 1


def test_same_id_other_content_is_a_recorded_conflict(
    center: AlarmCenter, caplog: pytest.LogCaptureFixture
) -> None:
    assert call(center.url + "/alarms", make_alarm())[0] == 201
    status, answer = call(center.url + "/alarms", make_alarm(amount_requested=1))
    assert status == 409 and answer["status"] == "conflict"
    assert answer["alarm_id"] == make_alarm()["alarm_id"] and "conflict" in answer["error"]
    [stored] = call(center.url + "/alarms")[1]["alarms"]
    assert stored["amount_requested"] == 20000  # the stored copy is untouched
    status, listing = call(center.url + "/conflicts")
    [conflict] = listing["conflicts"]
    assert status == 200 and conflict["kind"] == "alarm"
    assert conflict["refused"]["amount_requested"] == 1
    assert [r for r in caplog.records if r.levelname == "ERROR" and "CONFLICT" in r.getMessage()]
    [line] = format_conflicts(list_conflicts(center.db_path))
    assert "CONFLICT alarm" in line and '"amount_requested": 1' in line


def test_updates_are_idempotent_and_a_clashing_one_is_a_conflict(center: AlarmCenter) -> None:
    alarm_id = make_alarm()["alarm_id"]
    url = f"{center.url}/alarms/{alarm_id}/updates"
    update = {"update_id": "u1", "time": "2026-01-01T12:01:00+00:00", "amount_requested": 500}
    assert call(url, update)[0] == 404  # no such alarm yet
    assert call(center.url + "/alarms", make_alarm())[0] == 201
    assert call(url, update) == (201, {"alarm_id": alarm_id, "update_id": "u1", "status": "stored"})
    assert call(url, update)[1]["status"] == "duplicate"
    assert call(url, {**update, "amount_requested": 9})[0] == 409
    status, answer = call(url, {**update, "update_id": "u2", "pan": "4761739001010010"})
    assert (status, answer["field"]) == (400, "pan")
    [stored] = call(center.url + "/alarms")[1]["alarms"]
    assert [u["amount_requested"] for u in stored["updates"]] == [500]
    assert [c["update_id"] for c in call(center.url + "/conflicts")[1]["conflicts"]] == ["u1"]


def test_concurrent_repeats_store_one(center: AlarmCenter) -> None:
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(call(center.url + "/alarms", make_alarm())[0])
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [201]  # each attempt newly signed: no replay
    assert len(call(center.url + "/alarms")[1]["alarms"]) == 1


def _without(key: str) -> dict[str, Any]:
    alarm = make_alarm()
    del alarm[key]
    return alarm


@pytest.mark.parametrize(
    ("alarm", "field"),
    [
        (_without("alarm_id"), "alarm_id"),
        (_without("location"), "location"),
        (make_alarm(alarm_id=""), "alarm_id"),
        (make_alarm(time="yesterday"), "time"),
        (make_alarm(time="2026-01-01T12:00:00"), "time"),
        (make_alarm(terminal_id=7), "terminal_id"),
        (make_alarm(terminal_ip="10.1.2"), "terminal_ip"),
        (make_alarm(location={"lat": 1, "lon": 2, "source": "wifi", "age": 0}), "location.source"),
        (make_alarm(location={"lat": 91, "lon": 2, "source": "gps", "age": 0}), "location.lat"),
        (make_alarm(location={"lat": None, "lon": 2, "source": "gps", "age": 0}), "location.lat"),
        (make_alarm(location={"lat": 1, "lon": 2, "source": "gps", "age": -1}), "location.age"),
        (make_alarm(location={"lat": 1, "lon": 2, "source": "gps"}), "location.age"),
        (
            make_alarm(location={"lat": 1, "lon": 2, "source": "gps", "age": 0, "x": 1}),
            "location.x",
        ),
        (make_alarm(location=[1, 2]), "location"),
        (make_alarm(masked_pan="4761739001010010"), "masked_pan"),
        (make_alarm(masked_pan="4761 7390 0101 0010"), "masked_pan"),
        (make_alarm(masked_pan="4761739001**0010"), "masked_pan"),
        (make_alarm(masked_pan="unknown"), "masked_pan"),
        (make_alarm(account=None), "account"),
        (make_alarm(amount_requested=-1), "amount_requested"),
        (make_alarm(amount_requested="200"), "amount_requested"),
        (make_alarm(amount_requested=True), "amount_requested"),
        (make_alarm(amount_requested=12.5), "amount_requested"),
        (make_alarm(pan="4761739001010010"), "pan"),
        (make_alarm(evidence={"a": 1}), "evidence"),
        (make_alarm(evidence=[{"content_type": "image/jpeg"}]), "evidence[0].data_base64"),
        (
            make_alarm(evidence=[{"content_type": "image/jpeg", "data_base64": "!!notbase64"}]),
            "evidence[0].data_base64",
        ),
        (
            make_alarm(evidence=[{"content_type": "jpeg", "data_base64": "AAAA"}]),
            "evidence[0].content_type",
        ),
    ],
)
def test_invalid_alarm_is_refused_naming_the_field(
    center: AlarmCenter, alarm: dict[str, Any], field: str
) -> None:
    status, answer = call(center.url + "/alarms", alarm)
    assert status == 400
    assert answer["field"] == field
    assert field in answer["error"]
    assert call(center.url + "/alarms")[1]["alarms"] == []


def test_full_pan_is_refused_as_such(center: AlarmCenter) -> None:
    status, answer = call(center.url + "/alarms", make_alarm(masked_pan="4012345678909"))
    assert status == 400 and "full PAN" in answer["error"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"amount_requested": NaN}', b"\xff"])
def test_malformed_body_is_400(center: AlarmCenter, body: bytes) -> None:
    status, answer = call(center.url + "/alarms", body)
    assert status == 400 and answer["error"]


def test_oversized_body_is_413_and_a_large_valid_one_is_kept(center: AlarmCenter) -> None:
    huge = make_alarm(evidence=[{"content_type": "image/jpeg", "data_base64": "A" * 2_200_000}])
    status, answer = call(center.url + "/alarms", huge)
    assert status == 413 and "exceeds" in answer["error"]
    frame = bytes(range(256)) * 4000  # ~1 MB of "camera frame", under the limit as base64
    alarm = make_alarm(
        evidence=[{"content_type": "image/jpeg", "data_base64": base64.b64encode(frame).decode()}]
    )
    assert call(center.url + "/alarms", alarm)[0] == 201
    [listed] = call(center.url + "/alarms")[1]["alarms"]
    assert listed["evidence"][0]["bytes"] == len(frame)
    status, full = call(center.url + "/alarms/" + alarm["alarm_id"])
    assert status == 200 and base64.b64decode(full["evidence"][0]["data_base64"]) == frame


def test_unknown_paths_are_404(center: AlarmCenter) -> None:
    assert call(center.url + "/nope")[0] == 404
    assert call(center.url + "/alarms/no-such-alarm")[0] == 404
    assert call(center.url + "/nope", make_alarm())[0] == 404


def test_alarms_survive_a_restart_and_list_reads_the_file(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"
    with open_center(db) as first:
        assert call(first.url + "/alarms", make_alarm())[0] == 201
        # The CLI's list reads a running center's file without disturbing it.
        assert [a["alarm_id"] for a in list_alarms(db)] == [make_alarm()["alarm_id"]]
    with open_center(db) as second:
        [stored] = call(second.url + "/alarms")[1]["alarms"]
        assert stored["alarm_id"] == make_alarm()["alarm_id"]
        assert call(second.url + "/alarms", make_alarm())[0] == 200
    [line] = format_alarms(list_alarms(db))
    assert "T0000001" in line and "476173******0010" in line and "200.00" in line
    none_located = make_alarm(
        alarm_id="x", location={"lat": None, "lon": None, "source": "none", "age": None}
    )
    with open_center(db) as third:
        assert call(third.url + "/alarms", none_located)[0] == 201
    assert "location unknown" in format_alarms(list_alarms(db))[1]


def test_list_of_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(AlarmStoreError, match="no alarm store"):
        list_alarms(tmp_path / "missing.db")


def test_serve_reports_where_it_listens_and_stops(tmp_path: Path) -> None:
    ready: list[tuple[str, int]] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(tmp_path / "a.db", "127.0.0.1", 0, lambda h, p: ready.append((h, p)), stop),
        kwargs={
            "host_key_file": new_host_key_file(tmp_path / "host.key"),
            "operator_token_file": new_token_file(tmp_path / "operator.token"),
        },
    )
    thread.start()
    try:
        for _ in range(500):
            if ready:
                break
            threading.Event().wait(0.01)
        [(host, port)] = ready
        assert call(f"http://{host}:{port}/health") == (200, {"status": "ok"})
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_reading_needs_the_operator_token_and_posting_the_host_key(center: AlarmCenter) -> None:
    assert call(center.url + "/alarms", make_alarm())[0] == 201
    for path in ("/alarms", "/alarms/" + make_alarm()["alarm_id"], "/conflicts"):
        assert call(center.url + path, token=None)[0] == 401
        assert call(center.url + path, token=TOKEN[:-1] + "x")[0] == 401
        assert call(center.url + path)[0] == 200
    status, answer = call(center.url + "/alarms", make_alarm(alarm_id="other"), key=None)
    assert status == 401 and "signature" in answer["error"]
    status, _ = call(center.url + "/alarms", make_alarm(alarm_id="other"), key=bytes(32))
    assert status == 401
    assert call(center.url + "/health", token=None, key=None) == (200, {"status": "ok"})
    assert len(call(center.url + "/alarms")[1]["alarms"]) == 1


def test_without_an_operator_token_nobody_reads_over_http(tmp_path: Path) -> None:
    with AlarmCenter(tmp_path / "alarms.db", host_key=KEY) as center:
        assert call(center.url + "/alarms")[0] == 403
        assert call(center.url + "/alarms", make_alarm())[0] == 201  # posting still works


def test_the_api_is_described(center: AlarmCenter) -> None:
    status, spec = call(center.url + "/openapi.json", token=None, key=None)
    assert status == 200
    post = spec["paths"]["/alarms"]["post"]
    assert {"201", "200", "401", "409", "413"} <= set(post["responses"])
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert "alarm_id" in body["required"] and body["additionalProperties"] is False
    assert {"hostSignature", "operatorToken"} <= set(spec["components"]["securitySchemes"])
