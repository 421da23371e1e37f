"""The silent alarm's path, attacked with real processes: ``atm alarm-center`` and
``atm host`` each in its own process, a real terminal, and an attacker who sees all the
terminal's traffic and can reach the alarm center over HTTP but holds no key.

The findings these close ("the duress alarm can be swallowed"): the center took
unauthenticated posts; an alarm id was terminal-STAN-field 7, all on the wire, and rode
back to the terminal as the evidence reference; the center kept the first copy of an id,
so a forgery posted ahead made the real alarm count as delivered with a false location;
``GET /alarms`` showed cards, accounts and locations to anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock
from host_link.codec import Message, decode
from host_link.evidence import RESPONSE_CHARS
from host_link.framing import FrameDecoder, frame
from sim.alarm_center import list_alarms, list_conflicts
from sim.host.outbox import AlarmDeliverer, OutboxWorker, enqueue, ensure_schema, entries
from sim.scenarios.demo import DEMO_SEED, demo_terminal, host_process, seed_cards, sim_customer
from sim.scenarios.scripts import WITHDRAW, Scenario, apply
from sim.service_auth import (
    load_host_key,
    load_token,
    new_host_key_file,
    new_token_file,
    sign_request,
)
from sim.services import ServiceProcess, service_argv, service_process
from terminal.drivers.pinpad.sim import Keys, Pin

ERIN = "ERIN EBERT"  # has a duress PIN, 0852
SITE = (52.52, 13.405)  # where the demo terminal stands (its field 62)
FALSE_PLACE = {"lat": 0.0, "lon": 0.0, "source": "gps", "age": 0}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Center:
    service: ServiceProcess
    db: Path
    log: Path
    key: bytes
    token: str
    key_file: Path


@contextlib.contextmanager
def alarm_center(workdir: Path) -> Iterator[Center]:
    """``atm alarm-center`` with this run's host key and operator token (both 0600)."""
    key_file = new_host_key_file(workdir / "host.key")
    token_file = new_token_file(workdir / "operator.token")
    db, log = workdir / "alarms.db", workdir / "alarm-center.log"
    args = ["--db", str(db), "--host-key-file", str(key_file)]
    args += ["--operator-token-file", str(token_file), "--log", str(log)]
    args.append("--plain")  # what is attacked here is the signatures (TLS: test_tls_services)
    with service_process("alarm-center", args) as service:
        yield Center(service, db, log, load_host_key(key_file), load_token(token_file), key_file)


def http(
    url: str,
    body: dict[str, Any] | None = None,
    *,
    key: bytes | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    """One request as an outsider (no ``key``/``token``) or as the host/the desk would."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if key is not None:
        signed = sign_request(key, request.get_method(), request.selector, data or b"")
        for name, value in signed.items():
            request.add_header(name, value)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def post(url: str, data: bytes, headers: dict[str, str]) -> int:
    """The status of a POST with exactly these bytes and signature headers."""
    request = urllib.request.Request(url, data, {**headers, "Content-Type": "application/json"})
    try:
        with OPENER.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def alarm(alarm_id: str, location: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "terminal_id": "ATM00001",
        "terminal_ip": "127.0.0.1",
        "location": location or {"lat": SITE[0], "lon": SITE[1], "source": "site", "age": None},
        "masked_pan": "476173******0051",
        "account": "1000000005",
        "amount_requested": 0,
    }


# -- a duress session on the wire, with an attacker on the path ------------------------


class Tap:
    """A loopback relay between terminal and host that sees every message, as anyone on
    the network path can, and lets ``before_request`` act before the host sees one."""

    def __init__(self, port: int, before_request: Callable[[Message], Awaitable[None]]) -> None:
        self.port, self.before_request = port, before_request
        self.raw = bytearray()
        self.seen: list[Message] = []
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening; links end when the terminal has closed its side."""
        if self._server is not None:
            self._server.close()
        if self._links:
            await asyncio.wait(self._links, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.gather(
            self._pump(reader, up_writer, upstream=True),
            self._pump(up_reader, writer, upstream=False),
            return_exceptions=True,
        )

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        decoder = FrameDecoder()
        try:
            while data := await src.read(65536):
                self.raw += data
                for body in decoder.feed(data):
                    message = decode(body)
                    self.seen.append(message)
                    if upstream:
                        await self.before_request(message)
                    dst.write(frame(body))
                    await dst.drain()
        finally:
            dst.close()


@dataclasses.dataclass
class DuressRun:
    center: Center
    host_db: Path
    tap: Tap
    forged: list[tuple[str, int]]  # (the id an attacker guessed, the center's answer)
    alarms: list[dict[str, Any]]


@pytest.fixture(scope="module")
def duress_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuressRun]:
    """Erin withdraws under duress through :class:`Tap`; before the host sees any request
    the attacker posts a forged alarm (a false location) under the id the host would
    derive from it, terminal-STAN-field 7; then the center's alarms are read back."""
    workdir = tmp_path_factory.mktemp("alarm-path")
    forged: list[tuple[str, int]] = []
    with (
        alarm_center(workdir) as center,
        host_process(
            workdir / "host.db",
            DEMO_SEED,
            workdir / "host.log",
            alarm_center=center.service.url,
            demo=True,
            host_key_file=center.key_file,
            pki=None,
        ) as host,
    ):

        async def forge_ahead(request: Message) -> None:
            if request.get("t") in ("0100", "0200"):
                guess = f"{request['41']}-{request['11']}-{request['7']}"
                url = center.service.url + "/alarms"
                status, _ = await asyncio.to_thread(http, url, alarm(guess, FALSE_PLACE))
                forged.append((guess, status))

        tap = Tap(host.port, forge_ahead)

        async def session() -> None:
            port = await tap.start()
            clock = ManualClock(dt.datetime.now(dt.UTC))
            terminal = demo_terminal(workdir, port, DEMO_SEED, clock, tls=None)
            try:
                assert terminal.start() and await terminal.ensure_signed_on()
                card, _ = seed_cards(DEMO_SEED)[ERIN]
                entries_ = [Pin("0852"), WITHDRAW, Keys("100")]
                apply(Scenario("duress", ERIN, entries_, ""), sim_customer(terminal), card)
                result = await terminal.serve_one()
                assert result is not None and result.outcome == "dispensed"
            finally:
                await terminal.close()
                await tap.stop()

        asyncio.run(session())
        deadline = time.monotonic() + 20
        alarms: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # the host's outbox delivers in the background
            alarms = list_alarms(center.db)
            real = [a for a in alarms if a["location"]["source"] == "register"]
            if real and len(real[0]["evidence"]) == 2 and len(real[0]["updates"]) == 3:
                break
            time.sleep(0.2)
        yield DuressRun(center, host.db_path, tap, forged, alarms)


def test_unsigned_or_badly_signed_posts_are_refused_and_stored_nowhere(tmp_path: Path) -> None:
    with alarm_center(tmp_path) as center:
        url = center.service.url + "/alarms"
        assert http(url, alarm("unsigned"))[0] == 401
        assert http(url, alarm("other-key"), key=bytes(range(32)))[0] == 401
        # signed, then altered on the way: the location is part of what was signed
        data = json.dumps(alarm("altered")).encode()
        headers = sign_request(center.key, "POST", "/alarms", data)
        assert post(url, json.dumps(alarm("altered", FALSE_PLACE)).encode(), headers) == 401
        # a request signed an hour ago
        old = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        assert post(url, data, sign_request(center.key, "POST", "/alarms", data, clock=old)) == 401
        # the host's own request, captured and played again
        real = json.dumps(alarm("the-real-one")).encode()
        captured = sign_request(center.key, "POST", "/alarms", real)
        assert post(url, real, captured) == 201
        assert post(url, real, captured) == 401
        log = center.log.read_text()
    assert [a["alarm_id"] for a in list_alarms(center.db)] == ["the-real-one"]
    assert "refused POST /alarms" in log and "not signed" in log and "bad signature" in log
    assert "replayed request" in log and "stale" in log


def test_a_forged_alarm_posted_ahead_does_not_stop_the_real_one(duress_run: DuressRun) -> None:
    # the attacker guessed the ids the old host would have used, and posted first
    assert duress_run.forged and all(status == 401 for _, status in duress_run.forged)
    [real] = duress_run.alarms  # nothing forged was stored
    assert (real["location"]["lat"], real["location"]["lon"]) == SITE
    assert real["location"]["source"] == "register"  # the bank's register of its site
    assert real["location"]["reported"]["source"] == "site"  # what the terminal said
    assert real["masked_pan"].endswith("0051")
    assert len(real["evidence"]) == 2  # the quiet snapshots reached it too
    assert list_conflicts(duress_run.center.db) == []
    conn = sqlite3.connect(f"file:{duress_run.host_db}?mode=ro", uri=True)
    try:
        statuses = {s for (s,) in conn.execute("SELECT status FROM outbox WHERE kind = 'alarm'")}
    finally:
        conn.close()
    assert statuses == {"delivered"}


def test_the_alarm_id_cannot_be_derived_from_the_wire(duress_run: DuressRun) -> None:
    [real] = duress_run.alarms
    alarm_id = real["alarm_id"]
    requests = [m for m in duress_run.tap.seen if m.get("t") in ("0100", "0200")]
    assert alarm_id not in {f"{m['41']}-{m['11']}-{m['7']}" for m in requests}
    # the 0110 asks for snapshots sealed for the PIN pad: no reference in clear at all
    [asked] = [m["63"] for m in duress_run.tap.seen if m.get("t") == "0110"]
    assert len(asked) == RESPONSE_CHARS and b"REF=" not in bytes(duress_run.tap.raw)
    # and no byte of the terminal's traffic, either way, carries the alarm id
    assert alarm_id.encode() not in bytes(duress_run.tap.raw)
    assert all(alarm_id not in json.dumps(m) for m in duress_run.tap.seen)


def test_reading_alarms_needs_the_operator_token(duress_run: DuressRun) -> None:
    center = duress_run.center
    url = center.service.url + "/alarms"
    status, answer = http(url)
    assert status == 401 and "alarms" not in answer
    assert http(url, token="x" * 43)[0] == 401
    assert http(url, key=center.key)[0] == 401  # the host's key is not a reader's
    assert http(f"{url}/{duress_run.alarms[0]['alarm_id']}")[0] == 401
    status, answer = http(url, token=center.token)
    assert status == 200 and [a["alarm_id"] for a in answer["alarms"]] == [
        a["alarm_id"] for a in duress_run.alarms
    ]
    # on the center's own machine the file is read without HTTP, as before
    listed = subprocess.run(
        [*service_argv("alarm-center", "list", "--db", str(center.db), "--json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [a["alarm_id"] for a in json.loads(listed.stdout)] == [duress_run.alarms[0]["alarm_id"]]


def test_a_conflicting_duplicate_is_409_an_alert_and_never_a_delivery(tmp_path: Path) -> None:
    with alarm_center(tmp_path) as center:
        url = center.service.url + "/alarms"
        first = alarm("A1")
        assert http(url, first, key=center.key)[0] == 201
        assert http(url, first, key=center.key)[0] == 200  # a retry: acknowledged
        status, answer = http(url, {**first, "location": FALSE_PLACE}, key=center.key)
        assert status == 409 and answer["status"] == "conflict"
        # the host's outbox with the same clash: flagged, not delivered
        conn = sqlite3.connect(tmp_path / "host.db", isolation_level=None)
        ensure_schema(conn)
        enqueue(conn, "alarm", alarm("A1", FALSE_PLACE), "alarm-center")
        worker = OutboxWorker(
            conn, ManualClock(), {"alarm": AlarmDeliverer(center.service.url, center.key)}
        )
        result = asyncio.run(worker.drain_once())
        [entry] = entries(conn)
        conn.close()
        assert (result.delivered, result.failed) == (0, 1)
        assert entry.status == "failed" and "409" in (entry.last_error or "")
        _, listing = http(url, token=center.token)
        _, conflicts = http(center.service.url + "/conflicts", token=center.token)
    [kept] = listing["alarms"]
    assert kept["location"]["source"] == "site"  # the stored copy stands
    assert len(conflicts["conflicts"]) == 2 == len(list_conflicts(center.db))
    assert "ALARM CONFLICT" in center.log.read_text()  # the alert, at ERROR
    listed = subprocess.run(
        [*service_argv("alarm-center", "conflicts", "--db", str(center.db))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.count("CONFLICT alarm A1") == 2
