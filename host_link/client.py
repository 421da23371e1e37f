"""Asyncio client for the host link: one TCP connection, many outstanding requests.

The client stamps each request with the link-level fields (STAN, transmission time,
local time/date, terminal id), sends it through the sans-I/O :class:`Connection`, and
waits for the matching response with a per-request timeout. A lost connection fails
every waiting request with :class:`HostUnavailable`; the next request reconnects.

With an ``ssl`` context (mutual TLS: the terminal's certificate, the bank's CA) the
connection is a TLS one; a failed handshake is a :class:`HostUnavailable` like a refused
connection, so the SAF and the retries treat it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Mapping

from atm_common.clock import Clock, SystemClock
from host_link.authentication import Authenticator
from host_link.codec import Message, describe
from host_link.connection import (
    Connection,
    Event,
    MacFailure,
    MessageReceived,
    ResponseReceived,
    match_key,
)
from host_link.errors import FramingError, HostTimeout, HostUnavailable, MacError

log = logging.getLogger(__name__)


class StanSequence:
    """System trace audit numbers 000001..999999, wrapping; ``last`` can be persisted."""

    def __init__(self, last: int = 0) -> None:
        self.last = last % 1_000_000

    def next(self) -> str:
        self.last = self.last % 999_999 + 1
        return f"{self.last:06d}"


def transmission_time(clock: Clock) -> str:
    """Field 7, MMDDhhmmss in UTC."""
    return clock.now().strftime("%m%d%H%M%S")


class HostClient:
    """A terminal's link to its host."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        terminal_id: str,
        clock: Clock | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        stan: StanSequence | None = None,
        authenticator: Authenticator | None = None,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if len(terminal_id) != 8:
            raise ValueError("terminal id (field 41) must be 8 characters")
        self.host, self.port = host, port
        self.terminal_id = terminal_id
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.stan = stan or StanSequence()
        self.authenticator = authenticator
        self.ssl = ssl  # None: plain TCP
        self.server_hostname = server_hostname  # the name to verify; default ``host``
        self._conn = Connection(authenticator=authenticator)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._waiters: dict[tuple[str, str, str], asyncio.Future[Message]] = {}
        self._connect_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        async with self._connect_lock:  # concurrent first requests share one connection
            if self.connected:
                return
            await self._open()

    async def _open(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=(self.server_hostname or self.host) if self.ssl else None,
                    ssl_handshake_timeout=self.connect_timeout if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise HostUnavailable(f"cannot connect to host {self.host}:{self.port}: {exc}") from exc
        self._reader, self._writer = reader, writer
        self._conn = Connection(authenticator=self.authenticator)
        self._read_task = asyncio.create_task(self._read_loop(reader))
        log.info("connected to host %s:%d%s", self.host, self.port, " (TLS)" if self.ssl else "")

    async def close(self) -> None:
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._fail_waiters(HostUnavailable("connection closed"))

    def stamp(self, message: Mapping[str, str]) -> Message:
        """A copy of ``message`` with STAN, times and terminal id filled where absent."""
        stamped = dict(message)
        now = self.clock.now()
        stamped.setdefault("7", transmission_time(self.clock))
        if "11" not in stamped:  # a repeat keeps its STAN; only new messages draw one
            stamped["11"] = self.stan.next()
        stamped.setdefault("12", now.strftime("%H%M%S"))
        stamped.setdefault("13", now.strftime("%m%d"))
        stamped.setdefault("41", self.terminal_id)
        return stamped

    async def request(self, message: Mapping[str, str], timeout: float | None = None) -> Message:
        """Send a stamped request and return its response. Raises HostTimeout/HostUnavailable."""
        await self.connect()
        assert self._writer is not None
        key = match_key(message, as_response=True)
        if key in self._waiters:
            raise HostUnavailable(f"request STAN {key[1]} is already waiting for an answer")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            self._writer.write(self._conn.send(message, expect_response=True))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("-> %s", describe(message))
            await self._writer.drain()
            return await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            self._conn.forget(message)
            raise HostTimeout(f"no answer to {message.get('t')} STAN {key[1]}") from None
        except OSError as exc:
            await self.close()
            raise HostUnavailable(f"connection to host lost: {exc}") from exc
        finally:
            self._waiters.pop(key, None)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        error: Exception = HostUnavailable("host closed the connection")
        try:
            while data := await reader.read(65536):
                for event in self._conn.receive_data(data):
                    self._dispatch(event)
                if self._conn.broken is not None:
                    raise self._conn.broken
        except FramingError as exc:
            log.error("host sent a bad frame, dropping the connection: %s", exc)
            error = HostUnavailable(f"bad frame from host: {exc}")
        except OSError as exc:
            error = HostUnavailable(f"connection to host lost: {exc}")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fail_waiters(error)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MacFailure):
            log.error("response with a bad MAC treated as no response: %s", event)
            key = match_key(event.message, as_response=False)
            self._conn.forget_key(key)  # the request may be sent again (a SAF repeat)
            future = self._waiters.get(key)
            if future is not None and not future.done():
                future.set_exception(MacError(f"response MAC rejected: {event.reason}"))
        elif isinstance(event, ResponseReceived):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("<- %s", describe(event.message))
            future = self._waiters.get(match_key(event.message, as_response=False))
            if future is not None and not future.done():
                future.set_result(event.message)
        elif isinstance(event, MessageReceived):
            log.warning("unmatched message from host ignored: %s", describe(event.message))
        else:
            log.error("undecodable message from host ignored: %s", event.error)

    def _fail_waiters(self, error: Exception) -> None:
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(error)
