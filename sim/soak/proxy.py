"""A fault-injecting TCP proxy between terminal and host, on loopback.

It frames both directions (so faults hit whole ISO 8583 messages, as a network would)
and applies at most one armed fault to the next message it matches:

* ``unreachable``: refuse the next connection (close it at once);
* ``drop_response``: the host answered (and committed) but the answer never arrives:
  the terminal's connection is reset instead;
* ``reset_mid_request``: half of the next request reaches the host, then both
  connections are reset;
* ``corrupt_response``: one bit of the next response flips (the MAC no longer verifies);
* ``kill_host``: a callback kills the host just before the next request would reach it.

Over TLS it terminates TLS on both sides, as the network under test sees only what a
peer's TLS lets through and the faults must still hit whole messages: towards the
terminal it serves with the host's certificate (``server_ssl``), towards the host it
presents the terminal's (``client_ssl``), so the host's field 41 binding holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable

from host_link.errors import FramingError
from host_link.framing import FrameDecoder, frame

log = logging.getLogger(__name__)

FAULTS = ("unreachable", "drop_response", "reset_mid_request", "corrupt_response", "kill_host")


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.target_port = target_port
        self.server_ssl, self.client_ssl = server_ssl, client_ssl
        self.armed: str | None = None
        self.match: Callable[[bytes], bool] = lambda body: True
        self.on_kill_host: Callable[[], Awaitable[None]] | None = None
        self.fired: list[str] = []
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.server_ssl)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every link, and wait for the pumps to notice."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def arm(self, fault: str, match: Callable[[bytes], bool] | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown proxy fault {fault!r}")
        self.armed, self.match = fault, match or (lambda body: True)

    def _take(self, fault: str, body: bytes | None = None) -> bool:
        if self.armed == fault and (body is None or self.match(body)):
            self.armed = None
            self.fired.append(fault)
            return True
        return False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._take("unreachable"):
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1",
                self.target_port,
                ssl=self.client_ssl,
                server_hostname="127.0.0.1" if self.client_ssl else None,
            )
        except OSError:  # ssl.SSLError included
            writer.close()
            return
        self._links |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer, writer, upstream=True),
            self._pump(up_reader, writer, up_writer, upstream=False),
            return_exceptions=True,
        )
        self._links -= {writer, up_writer}

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        decoder = FrameDecoder()
        try:
            while data := await src.read(65536):
                for body in decoder.feed(data):
                    if not await self._forward(body, dst, other, upstream):
                        return
        except (ConnectionError, FramingError, OSError):
            pass
        finally:
            for w in (dst, other):
                with contextlib.suppress(Exception):
                    w.close()

    async def _forward(
        self, body: bytes, dst: asyncio.StreamWriter, other: asyncio.StreamWriter, upstream: bool
    ) -> bool:
        """Send one message on; False when the fault ends this link."""
        if upstream:
            if self._take("kill_host", body) and self.on_kill_host is not None:
                await self.on_kill_host()
                return False
            if self._take("reset_mid_request", body):
                wire = frame(body)
                dst.write(wire[: len(wire) // 2])
                with contextlib.suppress(ConnectionError):
                    await dst.drain()
                return False
        else:
            if self._take("drop_response", body):
                return False
            if self._take("corrupt_response", body):
                flipped = bytearray(body)
                flipped[-1] ^= 0x01
                body = bytes(flipped)
        dst.write(frame(body))
        await dst.drain()
        return True
