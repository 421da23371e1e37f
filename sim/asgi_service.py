"""How the simulator serves its small HTTP services (the alarm center, the carrier):
FastAPI apps under uvicorn, the stack the host's phone API already uses, on a background
thread (tests, the soak) or until SIGINT/SIGTERM (the CLI). What the apps themselves
share (body cap, errors, the host's signature, the operator's token) is
:mod:`sim.service_app`.

Why not the standard library's ``http.server`` any more: every limit (body size,
malformed requests, slow clients, keep-alive) had to be written by hand there, and each
was a place to get wrong. uvicorn's HTTP parser and timeouts are maintained by others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from atm_common.errors import AtmError

log = logging.getLogger(__name__)

GRACE = 5.0  # seconds requests in flight get to finish when a service stops
STARTUP_TIMEOUT = 10.0


class QuietServer(uvicorn.Server):
    """uvicorn inside someone else's loop or thread: its owner handles SIGINT/SIGTERM.

    ``ready`` is set once it listens, or once it has given up: a thread that started it
    waits on that event instead of polling ``started``.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def serve_in_thread(self, sock: socket.socket) -> None:
        """The body of a service thread: serve on ``sock`` until told to exit."""
        try:
            asyncio.run(self.serve(sockets=[sock]))
        finally:
            self.ready.set()  # a failed start wakes the waiter too


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, so the port is known (port 0) before uvicorn starts;
    uvicorn closes it on shutdown."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        # the address in the message: `atm host` listens on two ports, which one is taken
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def server_config(app: ASGIApp, tls: ssl.SSLContext | None = None) -> uvicorn.Config:
    """uvicorn's settings for ``app``; with ``tls`` (from :mod:`atm_common.tls`) it serves
    HTTPS with exactly that context: who must present a certificate, and from which CA,
    is decided there, never by uvicorn's defaults."""
    return uvicorn.Config(
        app,
        log_config=None,
        lifespan="off",
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(GRACE),
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
    )


class AsgiService:
    """An app served by uvicorn on a background thread; ``start`` returns the bound port.

    With ``tls`` (a server context) it serves HTTPS only: a client that does not complete
    the handshake (no certificate, one from another CA, plain HTTP) never reaches the app.
    """

    name = "service"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.host}:{self.port}"

    def create_app(self) -> FastAPI:
        """The app to serve (called at each start, after :meth:`opened`)."""
        raise NotImplementedError

    def opened(self) -> None:
        """Acquire what the app needs (a store) before it serves."""

    def closed(self) -> None:
        """Release it, after the last request finished."""

    def start(self) -> int:
        self.opened()
        try:
            sock = listen(self.host, self.port)
        except OSError:
            self.closed()
            raise
        self.port = int(sock.getsockname()[1])
        server = QuietServer(server_config(self.create_app(), self.tls))
        thread = threading.Thread(
            target=server.serve_in_thread, args=(sock,), name=f"{self.name}:{self.port}"
        )
        thread.start()
        server.ready.wait(STARTUP_TIMEOUT)
        self._server, self._thread = server, thread
        if not server.started:
            self.stop()
            raise AtmError(f"{self.name} did not start on {self.host}:{self.port}")
        log.info("%s listening on %s:%d", self.name, self.host, self.port)
        return self.port

    def stop(self) -> None:
        """Stop listening and let requests in flight finish. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACE + 5)
        self.closed()
        log.info("%s stopped", self.name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_until_signalled(
    service: AsgiService,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run ``service`` until SIGINT/SIGTERM (or ``stop``); ``on_ready(host, port)`` is where
    a CLI prints ``listening on HOST:PORT``."""
    stop = stop or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with service:
            if on_ready is not None:
                on_ready(service.host, service.port)
            stop.wait()
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(signum, handler)
