"""Tampering on a real TCP path: a proxy between terminal and host flips one bit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from host_link.framing import FrameDecoder
from sim.scenarios.scripts import WITHDRAW, Scenario
from terminal.drivers.pinpad.sim import Keys, Pin
from tests.conftest import Rig

ALICE = "1000000001"


class FlippingProxy:
    """Forwards both ways; flips one bit in the first host->terminal frame ``select`` picks."""

    def __init__(
        self, port: int, select: Callable[[bytes], bool], upstream: bool = False, offset: int = 20
    ) -> None:
        """``upstream`` tampers terminal->host frames instead of host->terminal ones;
        ``offset`` is the byte of the frame body whose lowest bit is flipped."""
        self.target, self.select, self.upstream, self.offset = port, select, upstream, offset
        self.flipped = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tamper: bool) -> None:
            decoder = FrameDecoder()
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if tamper:
                        out = b""
                        for body in decoder.feed(data):
                            if not self.flipped and self.select(body):
                                flipped = bytearray(body)
                                flipped[self.offset] ^= 0x01
                                body = bytes(flipped)
                                self.flipped += 1
                            out += len(body).to_bytes(2, "big") + body
                        data = out
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_w, self.upstream), pump(up_r, writer, not self.upstream)
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def test_tampered_approval_is_no_approval_and_is_reversed(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        proxy = FlippingProxy(rig.host.port, lambda frame: frame.startswith(b"0210"))
        port = await proxy.start()
        await rig.terminal.host.close()
        rig.terminal.host.port = port
        before = rig.balance(ALICE)
        result = await rig.play(
            Scenario(
                "tampered", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "host_unavailable"
            )
        )
        await proxy.stop()
        assert proxy.flipped == 1
        assert result.outcome == "host_unavailable"
        assert result.dispensed == 0 and rig.dispenser.handed_out_amount == 0
        assert rig.balance(ALICE) == before  # the host approved; the reversal undid it
        events = [e.event for e in rig.terminal.journal.tail(200)]
        assert "reversal_acknowledged" in events

    with_rig(body)


def test_tampered_request_is_refused_by_the_host(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        # the last byte before the MAC: the message still decodes, only the MAC can tell
        proxy = FlippingProxy(
            rig.host.port, lambda frame: frame.startswith(b"0200"), upstream=True, offset=-17
        )
        port = await proxy.start()
        await rig.terminal.host.close()
        rig.terminal.host.port = port
        before = rig.balance(ALICE)
        result = await rig.play(
            Scenario(
                "tampered", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "host_unavailable"
            )
        )
        await proxy.stop()
        assert proxy.flipped == 1
        # The host answered 63 unsigned: no answer the terminal can trust, so it reverses.
        assert result.outcome == "host_unavailable"
        events = [e.event for e in rig.terminal.journal.tail(200)]
        assert "reversal" in events
        assert rig.balance(ALICE) == before
        (count,) = rig.host.authoriser.conn.execute(
            "SELECT COUNT(*) FROM requests WHERE mti = '0200'"
        ).fetchone()
        assert count == 0

    with_rig(body)


def test_a_reversal_answer_with_a_bad_mac_is_retried_not_wedged(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        proxy = FlippingProxy(rig.host.port, lambda frame: frame.startswith(b"0410"), offset=-1)
        port = await proxy.start()
        await rig.terminal.host.close()
        rig.terminal.host.port = port
        before = rig.balance(ALICE)
        result = await rig.play(
            Scenario(
                "left", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "", take_cash=False
            )
        )
        assert result.outcome == "cash_retracted" and proxy.flipped == 1
        assert rig.terminal.saf.pending == 1  # the tampered 0410 counted as no answer
        # the repeat (same STAN) goes out on the same connection and is acknowledged
        assert await rig.terminal.saf.drain(rig.terminal.host, force=True) == 1
        assert rig.terminal.saf.pending == 0
        assert rig.balance(ALICE) == before
        await proxy.stop()

    with_rig(body)
