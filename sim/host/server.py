"""The host's asyncio TCP server: many terminals at once, one bad peer harms no other.

Each connection gets its own sans-I/O :class:`~host_link.connection.Connection`. A frame
that does not decode is answered with response code 30 when the MTI, STAN and terminal
id could still be read, and the connection is closed otherwise; a broken length prefix
closes that connection only. Everything is logged with sensitive fields masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from atm_common.errors import LocalProtocolError, SecurityError
from host_link.codec import describe
from host_link.codes import response_mti
from host_link.connection import (
    Connection,
    MacFailure,
    MalformedMessage,
    MessageReceived,
    ResponseReceived,
)
from host_link.errors import CodecError, FramingError
from sim.host.authoriser import Authoriser

log = logging.getLogger(__name__)


class HostServer:
    def __init__(self, authoriser: Authoriser, host: str = "127.0.0.1", port: int = 8583) -> None:
        self.authoriser = authoriser
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.on_alarm: Callable[[], None] | None = None  # wakes the outbox worker

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("host listening on %s:%d", self.host, self.port)
        return self.port

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Closing the transports ends each connection's read loop with EOF; cancelling
        # the tasks instead would make asyncio's stream callback log a CancelledError.
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=5)
            for task in late:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        peer = writer.get_extra_info("peername")
        conn = Connection(authenticator=self.authoriser.key_store)
        log.info("terminal connected from %s", peer)
        try:
            while data := await reader.read(65536):
                if not await self._handle_data(conn, data, writer, peer):
                    break
        except (ConnectionError, OSError) as exc:
            log.info("connection from %s lost: %s", peer, exc)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            log.info("terminal at %s disconnected", peer)

    async def _handle_data(
        self, conn: Connection, data: bytes, writer: asyncio.StreamWriter, peer: object
    ) -> bool:
        """Process what arrived; False when the connection must be closed."""
        try:
            events = conn.receive_data(data)
        except FramingError as exc:
            log.error("bad frame from %s, closing its connection: %s", peer, exc)
            return False
        for event in events:
            if isinstance(event, MacFailure):
                log.error("request from %s rejected: %s", peer, event.reason)
                reply = self._security_violation(event.message)
            elif isinstance(event, MalformedMessage):
                reply = self._format_error(event)
                log.error("malformed message from %s: %s", peer, event.error)
                if reply is None:
                    return False
            elif isinstance(event, (MessageReceived, ResponseReceived)):
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("<- %s from %s", describe(event.message), peer)
                ip = peer[0] if isinstance(peer, tuple) and peer else ""
                raised = self.authoriser.alarms.raised
                reply = self.authoriser.handle(event.message, ip)
                if self.authoriser.alarms.raised != raised and self.on_alarm is not None:
                    self.on_alarm()  # committed: deliver now
            if reply is not None:
                try:
                    writer.write(conn.send(reply))
                except (LocalProtocolError, CodecError, SecurityError) as exc:
                    log.error("cannot encode reply to %s: %s", peer, exc)
                    return False
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("-> %s", describe(reply))
        await writer.drain()
        if conn.broken is not None:
            log.error("bad frame from %s, closing its connection: %s", peer, conn.broken)
            return False
        return True

    @staticmethod
    def _security_violation(message: dict[str, str]) -> dict[str, str] | None:
        """A bad MAC is answered 63 and never acted on."""
        try:
            mti = response_mti(message.get("t", ""))
        except ValueError:
            return None
        reply = {"t": mti, "39": "63"}
        for field in ("7", "11", "41", "53"):  # 53: a DUKPT reply is MACed under its KSN
            if field in message:
                reply[field] = message[field]
        return reply

    @staticmethod
    def _format_error(event: MalformedMessage) -> dict[str, str] | None:
        partial = event.partial
        try:
            mti = response_mti(partial.get("t", ""))
        except ValueError:
            return None
        if not partial.get("11") or not partial.get("41"):
            return None
        reply = {"t": mti, "39": "30", "11": partial["11"], "41": partial["41"]}
        for field in ("7", "53"):  # 53: a DUKPT reply is MACed under the request's KSN
            if field in partial:
                reply[field] = partial[field]
        return reply
