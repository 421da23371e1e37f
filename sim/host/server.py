"""The host's asyncio TCP server: many terminals at once, one bad peer harms no other.

Each connection gets its own sans-I/O :class:`~host_link.connection.Connection`. A frame
that does not decode is answered with response code 30 when the MTI, STAN and terminal
id could still be read, and the connection is closed otherwise; a broken length prefix
closes that connection only. Everything is logged with sensitive fields masked.

Limits, so one peer cannot lock real terminals out or flood the log: a cap on open
connections (the one over it is closed at once), an idle timeout, a connection dropped
after a few requests that fail their MAC (a keyless client gains nothing by asking
again), and error lines a peer can provoke are rate-limited.

Over TLS (``ssl``: a server context requiring a client certificate from the bank's CA) the
handshake runs inside the connection's task, after the cap, so a failed one is a single
rate-limited line; the certificate's common name is the terminal id, and every message on
that connection must carry it in field 41. One that does not is refused as a MAC failure
is (response code 63, never acted on): a terminal's certificate speaks for that terminal
only. The MAC and its binding still apply inside the tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from atm_common.errors import LocalProtocolError, SecurityError
from atm_common.ratelimit import RateLimitedLog
from atm_common.tls import peer_common_name
from host_link.codec import Message, describe
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
from sim.host.group_commit import MAX_BATCH, GroupCommitter

log = logging.getLogger(__name__)
peer_log = RateLimitedLog(log)

MAX_CONNECTIONS = 512
IDLE_TIMEOUT = 300.0  # seconds without a byte; a terminal reconnects on its next request
FIRST_MESSAGE_TIMEOUT = 10.0  # a connection that says nothing at all is not a terminal
MAX_MAC_FAILURES = 3  # per connection; a terminal with the right keys never gets one


class HostServer:
    def __init__(
        self,
        authoriser: Authoriser,
        host: str = "127.0.0.1",
        port: int = 8583,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT,
        max_mac_failures: int = MAX_MAC_FAILURES,
        ssl: ssl.SSLContext | None = None,
        max_batch: int = MAX_BATCH,
        reuse_port: bool = False,
    ) -> None:
        """``max_batch``: the most requests one group commit holds (1: a commit per
        request); ``reuse_port``: listen with SO_REUSEPORT, so that several host
        processes share the port and the kernel spreads the connections over them."""
        self.authoriser = authoriser
        self.committer = GroupCommitter(authoriser, max_batch, on_alarm=self._alarm_committed)
        self.reuse_port = reuse_port
        self.host, self.port = host, port
        self.max_connections, self.idle_timeout = max_connections, idle_timeout
        self.first_message_timeout = first_message_timeout
        self.max_mac_failures = max_mac_failures
        self.ssl = ssl  # None: plain TCP (``atm host --plain``)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.on_alarm: Callable[[], None] | None = None  # wakes the outbox worker

    def _alarm_committed(self) -> None:
        if self.on_alarm is not None:
            self.on_alarm()  # committed: deliver now

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_port=self.reuse_port or None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        transport = "TLS (client certificates required)" if self.ssl else "plain TCP"
        log.info("host listening on %s:%d, %s", self.host, self.port, transport)
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
        peer = writer.get_extra_info("peername")
        if len(self._writers) >= self.max_connections:
            peer_log.log("cap", logging.WARNING, "connection cap reached, refusing %s", peer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn = Connection(authenticator=self.authoriser.key_store)
        failures = [0]  # MAC failures (and terminal id mismatches) on this connection
        timeout = self.first_message_timeout
        try:
            bound_id = await self._handshake(writer, peer)
            if bound_id == "":
                return
            log.info("terminal connected from %s%s", peer, f" as {bound_id}" if bound_id else "")
            while data := await asyncio.wait_for(reader.read(65536), timeout):
                timeout = self.idle_timeout
                if not await self._handle_data(conn, data, writer, peer, failures, bound_id):
                    break
        except TimeoutError:
            log.info("connection from %s idle for %.0f s, closed", peer, timeout)
        except (ConnectionError, OSError) as exc:
            log.info("connection from %s lost: %s", peer, exc)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            log.info("terminal at %s disconnected", peer)

    async def _handshake(self, writer: asyncio.StreamWriter, peer: object) -> str | None:
        """The TLS handshake, when the server has a context: the terminal id its verified
        certificate names; None on plain TCP; "" when the connection must be closed."""
        if self.ssl is None:
            return None
        try:
            await writer.start_tls(self.ssl, ssl_handshake_timeout=self.first_message_timeout)
        except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            peer_log.log("tls", logging.WARNING, "TLS handshake with %s failed: %s", peer, reason)
            return ""
        common_name = peer_common_name(writer.get_extra_info("ssl_object"))
        if not common_name:  # CERT_REQUIRED makes this unreachable; never serve anonymously
            peer_log.log("tls", logging.WARNING, "no client certificate from %s, closing", peer)
            return ""
        return common_name

    async def _handle_data(
        self,
        conn: Connection,
        data: bytes,
        writer: asyncio.StreamWriter,
        peer: object,
        failures: list[int],
        bound_id: str | None = None,
    ) -> bool:
        """Process what arrived; False when the connection must be closed.

        ``bound_id``: the terminal id of the connection's client certificate (TLS), which
        field 41 of every message must equal.
        """
        try:
            events = conn.receive_data(data)
        except FramingError as exc:
            peer_log.log("frame", logging.ERROR, "bad frame from %s, closing: %s", peer, exc)
            return False
        # replies in the order of the requests; those the authoriser decides are futures,
        # resolved by the group commit that makes them durable (sim/host/group_commit.py)
        replies: list[tuple[Message | asyncio.Future[Message | None] | None, bool, bytes]] = []
        keep = True
        for event in events:
            if bound_id is not None and isinstance(event, MessageReceived | ResponseReceived):
                claimed = event.message.get("41", "")
                if claimed != bound_id:  # another terminal's certificate: refused unread
                    event = MacFailure(
                        event.message, f"field 41 {claimed!r} is not the certificate's {bound_id!r}"
                    )
            unsigned = isinstance(event, MacFailure | MalformedMessage)
            bound_to = event.mac if isinstance(event, MessageReceived) else b""
            reply: Message | asyncio.Future[Message | None] | None = None
            if isinstance(event, MacFailure):
                failures[0] += 1
                peer_log.log(
                    "mac", logging.ERROR, "request from %s rejected: %s", peer, event.reason
                )
                if failures[0] >= self.max_mac_failures:
                    peer_log.log("mac-drop", logging.WARNING, "dropping %s: MAC failures", peer)
                    keep = False
                    break
                reply = self._security_violation(event.message)
            elif isinstance(event, MalformedMessage):
                reply = self._format_error(event)
                peer_log.log("malformed", logging.ERROR, "malformed from %s: %s", peer, event.error)
                if reply is None:
                    keep = False
                    break
            elif isinstance(event, (MessageReceived, ResponseReceived)):
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("<- %s from %s", describe(event.message), peer)
                ip = peer[0] if isinstance(peer, tuple) and peer else ""
                reply = self.committer.submit(event.message, ip)
            replies.append((reply, unsigned, bound_to))
        for pending, unsigned, bound_to in replies:
            reply = await pending if isinstance(pending, asyncio.Future) else pending
            if reply is None:
                continue
            try:
                # Never MAC an answer to what was not authenticated: it could be
                # passed off as the answer to a genuine request (reverse, not debit).
                if unsigned:
                    writer.write(conn.send_unsigned(reply))
                else:
                    writer.write(conn.send(reply, bound_to=bound_to))
            except (LocalProtocolError, CodecError, SecurityError) as exc:
                log.error("cannot encode reply to %s: %s", peer, exc)
                return False
            if log.isEnabledFor(logging.DEBUG):
                log.debug("-> %s", describe(reply))
        if not keep:
            await writer.drain()
            return False
        await writer.drain()
        if conn.broken is not None:
            peer_log.log("frame", logging.ERROR, "bad frame from %s: %s", peer, conn.broken)
            return False
        return True

    @staticmethod
    def _security_violation(message: dict[str, str]) -> dict[str, str] | None:
        """A bad MAC is answered 63, unsigned, and never acted on."""
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
