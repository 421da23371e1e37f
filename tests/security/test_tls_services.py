"""TLS on the HTTP links, against real processes: ``atm alarm-center`` and ``atm carrier``
with ``--tls-dir`` (mutual TLS), and the phone API of ``atm host --tls-dir`` (HTTPS, no
client certificate) reached with ``atm phone --ca``.

What TLS adds to the signatures of docs/security.md §16: nobody on the path reads an
alarm, a location or a code, and nobody without a certificate from the bank's CA even
gets to send a request to the alarm center or the carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atm_common.errors import ConfigError
from atm_common.tls import TlsFiles, client_context
from sim.host.outbox import AlarmDeliverer, CarrierLocator
from sim.pki import Pki, make_pki
from sim.service_auth import (
    load_host_key,
    load_token,
    new_host_key_file,
    new_token_file,
    sign_request,
)
from sim.services import ServiceProcess, service_argv, service_process
from tests.host.helpers import DEMO_SEED

pytestmark = pytest.mark.e2e

FRANK = "+4915100000006"


@dataclasses.dataclass
class Peers:
    pki: Pki
    key: bytes
    token: str
    center: ServiceProcess
    carrier: ServiceProcess


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """The alarm center and the carrier, each serving mutual TLS from one run's CA."""
    workdir = tmp_path_factory.mktemp("tls-services")
    pki = make_pki(workdir / "pki", ["ATM00001"])
    key_file = new_host_key_file(workdir / "host.key")
    token_file = new_token_file(workdir / "operator.token")
    tls = ["--tls-dir", str(pki.directory)]
    center_args = ["--db", str(workdir / "alarms.db"), "--host-key-file", str(key_file)]
    center_args += ["--operator-token-file", str(token_file), *tls]
    center_args += ["--log", str(workdir / "alarm-center.log")]
    carrier_args = ["--host-key-file", str(key_file), *tls, "--log", str(workdir / "carrier.log")]
    with (
        service_process("alarm-center", center_args) as center,
        service_process("carrier", carrier_args) as carrier,
    ):
        yield Peers(pki, load_host_key(key_file), load_token(token_file), center, carrier)


def alarm(alarm_id: str) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "terminal_id": "ATM00001",
        "terminal_ip": "127.0.0.1",
        "location": {"lat": 52.52, "lon": 13.405, "source": "site", "age": None},
        "masked_pan": "476173******0051",
        "account": "1000000005",
        "amount_requested": 0,
    }


def opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def signed_post(url: str, key: bytes, body: dict[str, Any], context: ssl.SSLContext | None) -> int:
    """A POST the host would make (valid signature), through ``context``."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    for name, value in sign_request(key, "POST", request.selector, data).items():
        request.add_header(name, value)
    try:
        with opener(context).open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def desk_alarms(peers: Peers) -> list[dict[str, Any]]:
    """The center's alarms, read as the desk does (its certificate, the operator token)."""
    context = client_context(peers.pki.service("alarm-center"))
    request = urllib.request.Request(
        f"{peers.center.url}/alarms", headers={"Authorization": f"Bearer {peers.token}"}
    )
    with opener(context).open(request, timeout=10) as response:
        return list(json.load(response)["alarms"])


def test_services_serve_https_and_accept_the_hosts_signed_requests_over_mutual_tls(
    peers: Peers,
) -> None:
    assert peers.center.url.startswith("https://") and peers.carrier.url.startswith("https://")
    host_tls = client_context(peers.pki.service("host"))
    asyncio.run(AlarmDeliverer(peers.center.url, peers.key, tls=host_tls)(alarm("tls-1")))
    assert [a["alarm_id"] for a in desk_alarms(peers)].count("tls-1") == 1
    found = asyncio.run(CarrierLocator(peers.carrier.url, peers.key, tls=host_tls).locate("X1"))
    assert found is not None and {"lat", "lon", "cell_id"} <= found.keys()


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_a_client_without_the_banks_certificate_cannot_even_send(
    peers: Peers, who: str, tmp_path: Path
) -> None:
    """Even with the host's key (a valid signature) the request never reaches the app."""
    if who == "no certificate":
        context = client_context(TlsFiles(peers.pki.ca))
    else:
        other = make_pki(tmp_path / "other", [])
        # trusts the real CA (so it would accept the center), shows another CA's certificate
        files = other.service("host")
        context = client_context(TlsFiles(peers.pki.ca, files.cert, files.key))
    for url in (f"{peers.center.url}/alarms", f"{peers.carrier.url}/health"):
        with pytest.raises((urllib.error.URLError, ssl.SSLError, OSError)):
            signed_post(url, peers.key, alarm(f"tls-{who}"), context)
    assert not [a for a in desk_alarms(peers) if a["alarm_id"] == f"tls-{who}"]


def test_plain_http_to_a_tls_port_gets_no_answer(peers: Peers) -> None:
    for service in (peers.center, peers.carrier):
        plain = service.url.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
            signed_post(f"{plain}/alarms", peers.key, alarm("tls-plain"), None)
    assert not [a for a in desk_alarms(peers) if a["alarm_id"] == "tls-plain"]


def test_the_host_refuses_an_https_peer_without_its_tls_files() -> None:
    with pytest.raises(ConfigError, match="--tls-dir"):
        AlarmDeliverer("https://127.0.0.1:1", bytes(32))
    with pytest.raises(ConfigError, match="https"):
        CarrierLocator("ftp://127.0.0.1:1", bytes(32))


@pytest.mark.parametrize("command", ["alarm-center", "carrier"])
def test_a_service_without_tls_dir_or_plain_refuses_with_one_line(
    command: str, tmp_path: Path
) -> None:
    key_file = new_host_key_file(tmp_path / "host.key")
    argv = service_argv(command, "--host-key-file", str(key_file), "--port", "0")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--tls-dir" in lines[0] and "--plain" in lines[0]


# -- the phone API over HTTPS ----------------------------------------------------------


@contextlib.contextmanager
def tls_host(workdir: Path, pki: Pki) -> Iterator[str]:
    """``atm host --tls-dir`` with the phone API; yields the API's URL."""
    args = ["--demo", "--db", str(workdir / "host.db"), "--seed", str(DEMO_SEED)]
    args += ["--tls-dir", str(pki.directory), "--api-port", "0", "--sms-inbox"]
    args += ["--log", str(workdir / "host.log")]
    with service_process("host", args) as host:
        assert host.process.stdout is not None
        line = host.process.stdout.readline().strip()
        assert line.startswith("api on https://"), line
        yield line.split()[-1]


def phone(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sim", "phone", "--url", url, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_phone_api_serves_https_and_atm_phone_verifies_it_with_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ["ATM00001"])
    with tls_host(tmp_path, pki) as url:
        ok = phone(url, "--ca", str(pki.ca), "--phone", FRANK, "request")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["status"] == "sent"

        unknown = phone(url, "--phone", FRANK, "request")  # the system's CAs only
        assert unknown.returncode == 5  # ExitCode.HOST: no bank it can talk to
        assert "CERTIFICATE_VERIFY_FAILED" in unknown.stderr and "--ca" in unknown.stderr

        other = make_pki(tmp_path / "other", [])
        forged = phone(url, "--ca", str(other.ca), "--phone", FRANK, "request")
        assert forged.returncode == 5 and "CERTIFICATE_VERIFY_FAILED" in forged.stderr

        cleartext = phone(url.replace("https://", "http://"), "--phone", FRANK, "request")
        assert cleartext.returncode == 5
