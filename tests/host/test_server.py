"""The host's TCP server on 127.0.0.1, port 0: real sockets, real SQLite, real client.

Terminals talk through :class:`LinkTerminal`: the project's MACing HostClient with a
simulated PIN pad holding the terminal's keys, signed on (key exchange) first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from atm_common.clock import ManualClock
from host_link.codec import Message, decode, encode
from host_link.codes import response_code
from host_link.framing import FrameDecoder, frame
from sim.host.server import HostServer
from tests.host.helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    Host,
    LinkTerminal,
    open_host,
    seed_with_terminals,
)

T = TypeVar("T")


def run(host: Host, scenario: Callable[[HostServer, int], Awaitable[T]], timeout: float = 30) -> T:
    """Start a HostServer on an ephemeral port, run ``scenario``, stop the server."""

    async def main() -> T:
        server = HostServer(host.authoriser, "127.0.0.1", 0)
        port = await server.start()
        assert port != 0
        try:
            return await asyncio.wait_for(scenario(server, port), timeout)
        finally:
            await server.stop()

    return asyncio.run(main())


class RawPeer:
    """A terminal that writes whatever bytes it likes and reads frames back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_message(self, timeout: float = 5) -> Message:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed by the host")
            self.frames += self.decoder.feed(data)
        return decode(self.frames.pop(0))

    async def closed_by_host(self, timeout: float = 5) -> bool:
        """True when the host closes; reads and discards anything before the EOF."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def signed_on(
    port: int, clock: ManualClock, terminal_id: str = "ATM00001", **kw: Any
) -> LinkTerminal:
    term = LinkTerminal(port, clock, terminal_id, **kw)
    await term.sign_on()
    return term


def test_sign_on_and_withdrawal_over_tcp(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> list[Message]:
        term = await signed_on(port, host.clock)
        try:
            echo = await term.request(term.echo())
            inquiry = await term.request(term.balance_inquiry(ALICE))
            cash = await term.request(term.withdrawal(ALICE, 12_000))
            return [echo, inquiry, cash]
        finally:
            await term.close()

    echo, inquiry, cash = run(host, scenario)
    assert (echo["t"], echo["39"], echo["70"]) == ("0810", "00", "301")
    assert (inquiry["t"], inquiry["39"]) == ("0110", "00")
    assert (cash["t"], cash["39"]) == ("0210", "00")
    assert "128" in cash or "64" in cash  # the host MACs its answers
    assert host.balance(ALICE.account) == 238_000
    host.conn.close()


def test_dukpt_terminal_over_tcp(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> list[str]:
        term = await signed_on(port, host.clock, "ATM00002")
        try:
            return [
                (await term.request(term.balance_inquiry(BOB)))["39"],
                (await term.request(term.withdrawal(BOB, 2_000)))["39"],
                (await term.request(term.withdrawal(BOB, 2_000, pin="1111")))["39"],
            ]
        finally:
            await term.close()

    assert run(host, scenario) == ["00", "00", "55"]
    assert host.balance(BOB.account) == 3_000
    assert host.balance("GL-CASH-ATM00002") == 1_000_000 - 2_000


def test_several_terminals_served_concurrently(tmp_path: Path, host_db: Path | str) -> None:
    ids = [f"ATM0010{i}" for i in range(6)]
    seed = seed_with_terminals(tmp_path / "seed.toml", ids)
    host = open_host(host_db, seed=seed)
    cards = [ALICE, BOB, CAROL, DAVE]

    async def one_terminal(port: int, tid: str, index: int) -> list[str]:
        term = await signed_on(port, host.clock, tid, seed=seed)
        codes = []
        try:
            for round_ in range(5):
                card = cards[(index + round_) % len(cards)]
                # Several requests in flight on one connection at once.
                replies = await asyncio.gather(
                    term.request(term.balance_inquiry(card)),
                    term.request(term.withdrawal(card, 100)),
                    term.request(term.echo()),
                )
                codes += [r["39"] for r in replies]
        finally:
            await term.close()
        return codes

    async def scenario(server: HostServer, port: int) -> list[list[str]]:
        terminals = [*ids, "ATM00001", "ATM00002"]
        jobs = [one_terminal(port, tid, i) for i, tid in enumerate(terminals)]
        results = await asyncio.gather(*jobs)
        assert server.connections == len(terminals)
        return results

    results = run(host, scenario)
    assert all(code == "00" for codes in results for code in codes), results
    assert host.count("transfers", "kind = 'withdrawal'") == 8 * 5
    total = sum(host.balance(c.account) for c in (ALICE, BOB, CAROL, DAVE))
    assert total == 250_000 + 5_000 + 80_000 + 900_000 - 8 * 5 * 100
    assert host.ledger.check() == []
    host.conn.close()


def test_duplicate_over_tcp_posts_once(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> list[Message]:
        term = await signed_on(port, host.clock)
        request = term.withdrawal(ALICE, 7_000)
        peer = await RawPeer.open(port)
        await peer.send(term.signed(request) * 2)
        replies = [await peer.read_message(), await peer.read_message()]
        await peer.close()
        await term.close()
        return replies

    first, second = run(host, scenario)
    assert first == second and first["39"] == "00"
    assert host.balance(ALICE.account) == 243_000
    host.conn.close()


def test_unsigned_request_is_answered_63_and_not_acted_on(
    tmp_path: Path, host_db: Path | str
) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> Message:
        term = await signed_on(port, host.clock)
        peer = await RawPeer.open(port)
        await peer.send(frame(encode(term.withdrawal(ALICE, 7_000))))  # no MAC
        reply = await peer.read_message()
        await peer.close()
        await term.close()
        return reply

    reply = run(host, scenario)
    assert (reply["t"], reply["39"]) == ("0210", "63")
    assert host.balance(ALICE.account) == 250_000
    host.conn.close()


def test_tampered_request_is_answered_63(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> Message:
        term = await signed_on(port, host.clock)
        data = bytearray(term.signed(term.withdrawal(ALICE, 7_000)))
        at = data.index(b"000000007000")
        data[at + 6] = ord("9")  # 7000 -> 907000: the MAC no longer verifies
        peer = await RawPeer.open(port)
        await peer.send(bytes(data))
        reply = await peer.read_message()
        await peer.close()
        await term.close()
        return reply

    reply = run(host, scenario)
    assert reply["39"] == "63"
    assert host.balance(ALICE.account) == 250_000


def damaged_after_terminal_id(message: Message) -> bytes:
    """Valid MTI, bitmap, STAN and terminal id; the fields after 41 are cut off."""
    wire = encode(message)
    cut = wire.index(message["41"].encode()) + len(message["41"]) + 3
    return wire[:cut]


def test_garbage_after_readable_header_gets_30(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> tuple[Message, Message, Message]:
        term = await signed_on(port, host.clock)
        request = term.withdrawal(ALICE, 5_000)
        peer = await RawPeer.open(port)
        await peer.send(frame(damaged_after_terminal_id(request)))
        error_reply = await peer.read_message()
        # The connection stays open and serves the next (good) request.
        await peer.send(term.signed(term.echo()))
        echo = await peer.read_message()
        await peer.close()
        await term.close()
        return request, error_reply, echo

    request, reply, echo = run(host, scenario)
    assert reply["t"] == "0210"
    assert reply["39"] == "30"
    assert reply["11"] == request["11"]
    assert reply["41"] == "ATM00001"
    assert reply["7"] == request["7"]
    assert echo["39"] == "00"
    assert host.balance(ALICE.account) == 250_000
    host.conn.close()


def test_garbage_with_non_ascii_field_gets_30(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> tuple[Message, Message]:
        term = await signed_on(port, host.clock)
        request = term.withdrawal(ALICE, 5_000)
        wire = bytearray(encode(request))
        at = wire.index(b"840", wire.index(b"ATM00001"))  # field 49, after 41
        wire[at : at + 3] = b"\xff\xfe\xfd"
        peer = await RawPeer.open(port)
        await peer.send(frame(bytes(wire)))
        reply = await peer.read_message()
        await peer.close()
        await term.close()
        return request, reply

    request, reply = run(host, scenario)
    assert (reply["t"], reply["39"], reply["11"]) == ("0210", "30", request["11"])


def test_unreadable_garbage_closes_the_connection(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> bool:
        peer = await RawPeer.open(port)
        await peer.send(frame(b"this is not ISO 8583 at all"))
        return await peer.closed_by_host()

    assert run(host, scenario)
    host.conn.close()


def test_header_without_terminal_id_closes_the_connection(
    tmp_path: Path, host_db: Path | str
) -> None:
    host = open_host(host_db)
    msg = {"t": "0800", "7": "0101120000", "11": "000001", "41": "ATM00001", "70": "301"}
    wire = encode(msg)
    cut = wire.index(b"000001") + 3  # inside the STAN

    async def scenario(server: HostServer, port: int) -> bool:
        peer = await RawPeer.open(port)
        await peer.send(frame(wire[:cut]))
        return await peer.closed_by_host()

    assert run(host, scenario)


def test_oversized_prefix_closes_only_that_connection(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> tuple[bool, list[str]]:
        good = await signed_on(port, host.clock)
        codes = [(await good.request(good.echo()))["39"]]
        bad = await RawPeer.open(port)
        await bad.send(struct.pack(">H", 0xFFFF) + b"x" * 10)
        closed = await bad.closed_by_host()
        for _ in range(3):
            codes.append((await good.request(good.withdrawal(ALICE, 1_000)))["39"])
        await good.close()
        return closed, codes

    closed, codes = run(host, scenario)
    assert closed
    assert codes == ["00", "00", "00", "00"]
    assert host.balance(ALICE.account) == 247_000
    host.conn.close()


def test_zero_length_prefix_closes_the_connection(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> bool:
        peer = await RawPeer.open(port)
        await peer.send(b"\x00\x00")
        return await peer.closed_by_host()

    assert run(host, scenario)


def test_valid_request_before_a_bad_prefix_is_answered(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> tuple[Message, bool]:
        term = await signed_on(port, host.clock)
        peer = await RawPeer.open(port)
        await peer.send(term.signed(term.echo()) + b"\xff\xff")
        reply = await peer.read_message()
        closed = await peer.closed_by_host()
        await term.close()
        return reply, closed

    reply, closed = run(host, scenario)
    assert reply["39"] == "00"
    assert closed


def test_random_bytes_on_one_connection_do_not_disturb_another(
    tmp_path: Path, host_db: Path | str
) -> None:
    host = open_host(host_db)
    rng = random.Random(8583)

    async def spray(port: int, stop: asyncio.Event) -> int:
        """Open connections and pour random bytes into them until told to stop."""
        connections = 0
        while not stop.is_set():
            peer = await RawPeer.open(port)
            connections += 1
            try:
                for _ in range(200):
                    if stop.is_set():
                        break
                    await peer.send(rng.randbytes(rng.randint(1, 300)))
                    await asyncio.sleep(0)
            except (ConnectionError, OSError):
                pass
            await peer.close()
        return connections

    async def scenario(server: HostServer, port: int) -> tuple[int, list[str]]:
        stop = asyncio.Event()
        sprayer = asyncio.create_task(spray(port, stop))
        term = await signed_on(port, host.clock)
        codes = []
        try:
            for _ in range(30):
                codes.append((await term.request(term.withdrawal(CAROL, 100)))["39"])
                await asyncio.sleep(0)
        finally:
            stop.set()
            sprayed = await sprayer
            await term.close()
        return sprayed, codes

    sprayed, codes = run(host, scenario)
    assert sprayed >= 1
    assert codes == ["00"] * 30
    assert host.balance(CAROL.account) == 80_000 - 30 * 100
    assert host.ledger.check() == []
    host.conn.close()


def test_server_stop_closes_open_connections(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def main() -> bool:
        server = HostServer(host.authoriser, "127.0.0.1", 0)
        port = await server.start()
        peer = await RawPeer.open(port)
        await peer.send(b"\x00\x05")  # half a frame: the connection idles
        await server.stop()
        return await peer.closed_by_host()

    assert asyncio.run(main())


def test_stop_with_open_connections_reports_no_loop_errors(
    tmp_path: Path, host_db: Path | str
) -> None:
    host = open_host(host_db)
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        server = HostServer(host.authoriser, "127.0.0.1", 0)
        port = await server.start()
        term = await signed_on(port, host.clock)
        await term.request(term.echo())
        peers = [await RawPeer.open(port) for _ in range(3)]
        await server.stop()
        for peer in peers:
            await peer.close()
        await term.close()
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert errors == []


def test_every_code_the_server_sends_is_in_the_table(tmp_path: Path, host_db: Path | str) -> None:
    """63 (bad MAC, no key) is sent by the host: the terminal must know what it means."""
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> Message:
        term = await signed_on(port, host.clock)
        peer = await RawPeer.open(port)
        await peer.send(frame(encode(term.echo())))  # unsigned
        reply = await peer.read_message()
        await peer.close()
        await term.close()
        return reply

    reply = run(host, scenario)
    assert reply["39"] == "63"
    assert not response_code(reply["39"]).meaning.startswith("Unknown")


def test_dukpt_tampered_request_is_answered_63(tmp_path: Path, host_db: Path | str) -> None:
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> Message:
        term = await signed_on(port, host.clock, "ATM00002")
        data = bytearray(term.signed(term.withdrawal(BOB, 1_000)))
        at = data.index(b"000000001000")
        data[at + 6] = ord("9")
        peer = await RawPeer.open(port)
        await peer.send(bytes(data))
        try:
            return await peer.read_message()
        finally:
            await peer.close()
            await term.close()

    reply = run(host, scenario)
    assert (reply["t"], reply["39"]) == ("0210", "63")
    assert host.balance(BOB.account) == 5_000


def test_dukpt_garbage_after_header_is_answered_30_unsigned(
    tmp_path: Path, host_db: Path | str
) -> None:
    """An undecodable request is answered 30 without a MAC: nothing to bind it to."""
    host = open_host(host_db)

    async def scenario(server: HostServer, port: int) -> Message:
        term = await signed_on(port, host.clock, "ATM00002")
        peer = await RawPeer.open(port)
        await peer.send(frame(damaged_after_terminal_id(term.withdrawal(BOB, 1_000))))
        reply = await peer.read_message()
        await peer.close()
        # The terminal's own connection is unaffected.
        assert (await term.request(term.echo()))["39"] == "00"
        await term.close()
        return reply

    reply = run(host, scenario)
    assert reply["39"] == "30"
    assert "64" not in reply and "128" not in reply
    assert host.balance(BOB.account) == 5_000
