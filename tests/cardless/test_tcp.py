"""Over real sockets on 127.0.0.1: the host's ``serve`` (ISO 8583 server, phone API under
uvicorn, outbox worker, expiry sweep) in one event loop in a thread; the phone simulator
over HTTP and an ATM's MACed host link over TCP collect one reservation."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from host_link.cardless import cardless_pan, encode_field63
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode
from sim.host.app import build_host, serve
from sim.phone import PhoneApiError, PhoneClient
from sim.phone.cli import main
from sim.scenarios.link import TerminalLink
from tests.cardless.helpers import FRANK_DEBIT, FRANK_PHONE, face
from tests.host.helpers import DEMO_SEED


class RunningHost:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock(dt.datetime.now(dt.UTC))
        self.server = build_host(
            tmp_path / "host.db", DEMO_SEED, port=0, clock=self.clock, demo=True, pki=None
        )
        self.db_path = tmp_path / "host.db"
        self.ports: dict[str, int] = {}
        self.ready = threading.Event()
        self.errors: list[BaseException] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="host", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
            await serve(
                self.server,
                lambda host, port: self.ports.update(iso=port),
                db_path=self.db_path,
                api_port=0,
                sms_inbox=True,  # the phone reads its codes from the simulated network
                on_api_ready=self._api_ready,
                stop=self.stop,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.errors.append(exc)
            self.ready.set()

    def _api_ready(self, host: str, port: int) -> None:
        assert host == "127.0.0.1"
        self.ports["api"] = port
        self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "host did not stop"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningHost]:
    host = RunningHost(tmp_path)
    host.thread.start()
    assert host.ready.wait(60), "host did not start"
    if host.errors:
        raise host.errors[0]
    yield host
    host.close()


def wait_delivered(phone: PhoneClient, count: int) -> list[dict[str, object]]:
    """The outbox worker delivers SMS to the simulated network within its poll interval."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        inbox = phone.messages()
        if len(inbox) >= count and all(m["status"] == "delivered" for m in inbox):
            return inbox
        time.sleep(0.05)
    raise AssertionError(f"SMS not delivered: {phone.messages()}")


async def collect(port: int, clock: ManualClock, code: str) -> tuple[Message, Message]:
    """An ATM (TDES, real PIN pad keys and MACs) signs on, verifies the code, withdraws."""
    link = TerminalLink(DEMO_SEED, "ATM00001", port, clock=clock)
    try:
        await link.sign_on()
        fields: Message = {
            "32": "00000000001",
            "49": "840",
            "63": encode_field63(FRANK_PHONE, "code"),
            **link.pin_fields(code, cardless_pan(FRANK_PHONE)),
        }
        inquiry = await link.request(
            {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.CARDLESS_INQUIRY, **fields}
        )
        withdrawal = await link.request(
            {
                "t": Mti.FINANCIAL_REQUEST,
                "3": ProcessingCode.CARDLESS_WITHDRAWAL,
                "4": inquiry.get("4", ""),
                **fields,
            }
        )
        return inquiry, withdrawal
    finally:
        await link.close()


def test_phone_and_atm_over_tcp(running: RunningHost, capsys: pytest.CaptureFixture[str]) -> None:
    with PhoneClient(running.url, FRANK_PHONE) as phone:
        assert phone.request()["status"] == "sent"
        wait_delivered(phone, 1)
        code = phone.latest_code()
        assert code is not None
        assert phone.verify(code)["status"] == "verified"
        matched = phone.capture_face(face("obama2.jpg"))
        assert matched["match"] is True
        accounts = {a["account"] for a in phone.accounts()}
        assert FRANK_DEBIT in accounts
        quote = phone.quote(FRANK_DEBIT, 10_000, "code")
        reservation = phone.confirm(quote["quote_id"])
        assert reservation["total"] == 10_200 and reservation["code"]
        wait_delivered(phone, 2)
        assert phone.latest_code() == reservation["code"]  # the code also came by SMS
        with pytest.raises(PhoneApiError) as refused:
            phone.confirm(quote["quote_id"])
        assert refused.value.status == 409

        inquiry, withdrawal = asyncio.run(
            collect(running.ports["iso"], running.clock, str(reservation["code"]))
        )
        assert inquiry["39"] == "00" and int(inquiry["4"]) == 10_000
        assert withdrawal["39"] == "00"
        assert phone.status()["status"] == "used"
        # The ATM that just signed on is the way to go; the airport ATM was never heard.
        route = phone.route(52.5215, 13.4075, 10_000)
        assert [a["terminal_id"] for a in route["atms"]] == ["ATM00001"]
        assert route["excluded"] == [
            {"terminal_id": "ATM00002", "reason": "not in service (unknown)"}
        ]

    # The command line prints the same JSON.
    rid = str(reservation["reservation_id"])
    assert main(["--url", running.url, "status", rid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "used"
    assert main(["--url", running.url, "cancel", rid]) == 1
    assert "409" in capsys.readouterr().err
