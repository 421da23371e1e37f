"""``GET /terminals``: the fleet view over HTTP, for the bank operator's token only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from host_link.supervision import DeviceEntry, encode_status
from sim.host.api import create_app
from sim.host.cardless.phone import PhoneBank
from sim.host.supervision.api import install_fleet
from sim.host.supervision.fleet import list_terminals
from sim.scenarios.demo import host_process
from sim.service_auth import new_token_file
from tests.host.helpers import DEMO_SEED, Host, Terminal

TOKEN = "operator-token-for-the-fleet-view-0123456789"


def _report_jam(host: Host, terminal: Terminal) -> None:
    jam = DeviceEntry("dispenser", "fault", "now", "engineer")
    request = {"t": "0800", "70": "161", "63": encode_status("in_service", 900_000, [jam])}
    response = host.authoriser.handle(terminal.client.stamp(request))
    assert response is not None and response["39"] == "00"


def test_terminals_needs_the_operator_token(host: Host, terminal: Terminal) -> None:
    _report_jam(host, terminal)
    app = create_app(PhoneBank(host.authoriser.cardless))
    install_fleet(app, host.conn, TOKEN)
    with TestClient(app) as api:
        assert api.get("/terminals").status_code == 401
        wrong = api.get("/terminals", headers={"Authorization": "Bearer " + "x" * 40})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in wrong.text
        got = api.get("/terminals", headers={"Authorization": f"Bearer {TOKEN}"})
        assert got.status_code == 200
        fleet = got.json()["terminals"]
        assert fleet == list_terminals(host.conn)  # the same data as atm host status
        (atm1,) = [t for t in fleet if t["terminal_id"] == "ATM00001"]
        assert atm1["attention"] == "now" and atm1["devices"][0]["actor"] == "engineer"
        assert "/terminals" in api.get("/openapi.json").json()["paths"]


def test_without_a_token_file_nobody_reads_the_fleet(host: Host) -> None:
    app = create_app(PhoneBank(host.authoriser.cardless))
    install_fleet(app, host.conn, None)
    with TestClient(app) as api:
        got = api.get("/terminals", headers={"Authorization": f"Bearer {TOKEN}"})
        assert got.status_code == 403


@pytest.mark.e2e
def test_atm_host_serves_terminals_with_operator_token_file(tmp_path: Path) -> None:
    token_file = new_token_file(tmp_path / "operator.token")
    token = token_file.read_text().strip()
    extra = ["--operator-token-file", str(token_file)]
    with host_process(
        tmp_path / "h.db", DEMO_SEED, api=True, demo=True, pki=None, extra_args=extra
    ) as host:
        url = f"{host.api_url}/terminals"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            terminals = json.loads(answer.read())["terminals"]
        assert {"ATM00001", "ATM00002"} <= {t["terminal_id"] for t in terminals}
