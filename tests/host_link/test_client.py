"""HostClient over real TCP on 127.0.0.1 against a small scripted host."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from atm_common.clock import ManualClock
from host_link.client import HostClient, StanSequence, transmission_time
from host_link.codec import Message
from host_link.codes import response_mti
from host_link.connection import Connection, MessageReceived, ResponseReceived
from host_link.errors import HostLinkError, HostTimeout, HostUnavailable

T = TypeVar("T")


class ScriptedHost:
    """Answers each request with 00 unless its STAN is scripted otherwise.

    ``silent``: never answered; ``delayed``: answered after a delay; ``close_on``: the host
    closes the connection when it receives that STAN; ``raw``: bytes sent instead.
    """

    def __init__(self) -> None:
        self.silent: set[str] = set()
        self.delayed: dict[str, float] = {}
        self.close_on: set[str] = set()
        self.raw: dict[str, bytes] = {}
        self.received: list[Message] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        conn = Connection()
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    assert isinstance(event, (MessageReceived, ResponseReceived))
                    msg = event.message
                    self.received.append(msg)
                    stan = msg.get("11", "")
                    if stan in self.close_on:
                        writer.close()
                        return
                    if stan in self.silent:
                        continue
                    if stan in self.raw:
                        writer.write(self.raw[stan])
                        continue
                    reply = {
                        "t": response_mti(msg["t"]),
                        "11": stan,
                        "41": msg["41"],
                        "39": "00",
                    }
                    if stan in self.delayed:
                        asyncio.get_running_loop().call_later(
                            self.delayed[stan], self._late, writer, conn.send(reply)
                        )
                    else:
                        writer.write(conn.send(reply))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _late(writer: asyncio.StreamWriter, data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)


def run(scenario: Callable[[ScriptedHost, HostClient], Awaitable[T]], **client_args: float) -> T:
    async def main() -> T:
        host = ScriptedHost()
        port = await host.start()
        args: dict[str, float] = {"timeout": 2.0} | client_args
        client = HostClient("127.0.0.1", port, terminal_id="ATM00001", clock=ManualClock(), **args)  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(scenario(host, client), 20)
        finally:
            await client.close()
            await host.stop()

    return asyncio.run(main())


def echo(client: HostClient, **fields: str) -> Message:
    return client.stamp({"t": "0800", "70": "301", **fields})


def test_request_and_response() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> tuple[Message, Message]:
        request = echo(client)
        return request, await client.request(request)

    request, response = run(scenario)
    assert response == {"t": "0810", "11": request["11"], "41": "ATM00001", "39": "00"}


def test_many_outstanding_requests_on_one_connection() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> tuple[list[Message], int]:
        await client.connect()
        host.delayed = {"000001": 0.2, "000002": 0.1}  # answered out of order
        requests = [echo(client) for _ in range(10)]
        responses = await asyncio.gather(*(client.request(r) for r in requests))
        for req, resp in zip(requests, responses, strict=True):
            assert resp["11"] == req["11"]
        return responses, host.connections

    responses, connections = run(scenario)
    assert len(responses) == 10
    assert connections == 1


def test_timeout_then_connection_stays_usable() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> tuple[Message, bool, int]:
        slow = echo(client)
        host.delayed[slow["11"]] = 0.4
        with pytest.raises(HostTimeout, match=slow["11"]):
            await client.request(slow, timeout=0.1)
        assert client.connected
        fast = await client.request(echo(client))
        await asyncio.sleep(0.5)  # the late answer to the first request arrives and is ignored
        after = await client.request(echo(client))
        assert after["39"] == "00"
        # The timed-out STAN can be sent again (it was forgotten).
        host.delayed.clear()
        again = await client.request(slow)
        assert again["11"] == slow["11"]
        return fast, client.connected, host.connections

    fast, connected, connections = run(scenario)
    assert fast["39"] == "00"
    assert connected
    assert connections == 1


def test_default_timeout_applies() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> None:
        request = echo(client)
        host.silent.add(request["11"])
        with pytest.raises(HostTimeout):
            await client.request(request)

    run(scenario, timeout=0.1)


def test_server_closing_fails_every_waiter_with_host_unavailable() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> tuple[list[object], int]:
        await client.connect()
        first, second, closer = echo(client), echo(client), echo(client)
        host.silent |= {first["11"], second["11"]}
        host.close_on.add(closer["11"])
        results = await asyncio.gather(
            client.request(first),
            client.request(second),
            client.request(closer),
            return_exceptions=True,
        )
        # The next request reconnects.
        again = await client.request(echo(client))
        assert again["39"] == "00"
        return list[object](results), host.connections

    results, connections = run(scenario, timeout=5.0)
    assert all(isinstance(r, HostUnavailable) for r in results), results
    assert connections == 2


def test_host_unavailable_is_a_host_link_error() -> None:
    assert issubclass(HostUnavailable, HostLinkError)
    assert issubclass(HostTimeout, HostLinkError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_refused() -> None:
    async def main() -> None:
        client = HostClient("127.0.0.1", free_port(), terminal_id="ATM00001", clock=ManualClock())
        with pytest.raises(HostUnavailable, match="cannot connect"):
            await client.request(echo(client))
        assert not client.connected
        await client.close()

    asyncio.run(main())


def test_host_sending_an_oversized_frame_fails_waiters() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> None:
        request = echo(client)
        host.raw[request["11"]] = b"\xff\xff" + b"x" * 10
        with pytest.raises(HostUnavailable, match="bad frame"):
            await client.request(request)
        assert not client.connected

    run(scenario)


def test_undecodable_message_from_host_is_ignored() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> Message:
        bad = echo(client)
        host.raw[bad["11"]] = b"\x00\x05hello"
        with pytest.raises(HostTimeout):
            await client.request(bad, timeout=0.2)
        return await client.request(echo(client))

    assert run(scenario)["39"] == "00"


def test_same_stan_twice_in_flight_refused() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> None:
        await client.connect()
        request = echo(client)
        host.delayed[request["11"]] = 0.2
        first = asyncio.create_task(client.request(request))
        await asyncio.sleep(0.05)
        with pytest.raises(HostUnavailable, match="already waiting"):
            await client.request(request)
        assert (await first)["39"] == "00"

    run(scenario)


def test_close_fails_waiters_and_is_idempotent() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> None:
        request = echo(client)
        host.silent.add(request["11"])
        task = asyncio.create_task(client.request(request))
        await asyncio.sleep(0.1)
        await client.close()
        with pytest.raises(HostUnavailable):
            await task
        await client.close()
        assert not client.connected

    run(scenario)


def test_concurrent_first_requests_share_one_connection() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> tuple[list[object], int]:
        results = await asyncio.gather(
            *(client.request(echo(client)) for _ in range(3)), return_exceptions=True
        )
        return list[object](results), host.connections

    results, connections = run(scenario)
    assert all(isinstance(r, dict) and r["39"] == "00" for r in results), results
    assert connections == 1


# -- stamping and STANs -----------------------------------------------------------------


def test_stan_sequence_wraps() -> None:
    seq = StanSequence(999_998)
    assert [seq.next(), seq.next(), seq.next()] == ["999999", "000001", "000002"]
    assert StanSequence().next() == "000001"
    assert StanSequence(1_000_000).next() == "000001"
    assert StanSequence(41).next() == "000042"


def test_stan_sequence_never_yields_zero() -> None:
    seq = StanSequence(999_990)
    stans = [seq.next() for _ in range(30)]
    assert "000000" not in stans
    assert len(set(stans)) == 30


def test_stamp_fills_link_fields() -> None:
    clock = ManualClock()
    client = HostClient("127.0.0.1", 1, terminal_id="ATM00042", clock=clock)
    stamped = client.stamp({"t": "0800", "70": "301"})
    assert stamped == {
        "t": "0800",
        "70": "301",
        "7": "0101120000",
        "11": "000001",
        "12": "120000",
        "13": "0101",
        "41": "ATM00042",
    }
    assert transmission_time(clock) == "0101120000"
    clock.advance(3661)
    again = client.stamp({"t": "0800", "11": "123456"})
    assert again["11"] == "123456"  # given fields are kept
    assert again["7"] == "0101130101"


def test_stamp_keeps_the_sequence_when_a_stan_is_given() -> None:
    client = HostClient("127.0.0.1", 1, terminal_id="ATM00001", clock=ManualClock())
    first = client.stamp({"t": "0800"})
    client.stamp(first)  # a repeat of the same request
    assert client.stamp({"t": "0800"})["11"] == "000002"


def test_stamp_does_not_modify_its_argument() -> None:
    client = HostClient("127.0.0.1", 1, terminal_id="ATM00001", clock=ManualClock())
    msg = {"t": "0800"}
    client.stamp(msg)
    assert msg == {"t": "0800"}


@pytest.mark.parametrize("tid", ["ATM1", "ATM000001", ""])
def test_terminal_id_must_be_eight_characters(tid: str) -> None:
    with pytest.raises(ValueError):
        HostClient("127.0.0.1", 1, terminal_id=tid)


def test_connect_is_idempotent() -> None:
    async def scenario(host: ScriptedHost, client: HostClient) -> int:
        await client.connect()
        await client.connect()
        with contextlib.suppress(HostTimeout):
            await client.request(echo(client))
        return host.connections

    assert run(scenario) == 1
