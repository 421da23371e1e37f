"""``atm alarm-center``: the police/security desk the bank's host raises duress alarms at.

A real HTTP server (FastAPI under uvicorn, :mod:`sim.asgi_service`) so the host's outbox
is tested against the failure modes it will meet in production: connection refused
while the center is down, a slow or crashed peer, 4xx for a payload that will never be
accepted, 401 for a key that does not match. What the API accepts and from whom is
:mod:`sim.alarm_center.api`; what an alarm must look like,
:mod:`sim.alarm_center.contract`; how it is kept, :mod:`sim.alarm_center.store`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from atm_common.clock import Clock
from atm_common.errors import ConfigError
from atm_common.tls import server_context
from sim.alarm_center.api import create_app
from sim.alarm_center.store import AlarmStore
from sim.asgi_service import AsgiService, run_until_signalled
from sim.pki import Pki
from sim.service_auth import FRESHNESS, RequestVerifier, load_host_key, load_token

MAX_BODY = 2 * 1024 * 1024  # an alarm with a few camera frames; anything larger is refused


class AlarmCenter(AsgiService):
    """The service with its store; ``start`` serves it on a background thread.

    ``host_key`` verifies the host's signed posts; ``operator_token`` lets the alarm desk
    read over HTTP (None: nobody can, the file is read with ``atm alarm-center list``).
    ``tls`` (a server context requiring client certificates) serves HTTPS with mutual
    TLS; the signatures and the token still decide what a request may do.
    """

    name = "alarm center"

    def __init__(
        self,
        db_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        host_key: bytes,
        operator_token: str | None = None,
        clock: Clock | None = None,
        auth_clock: Clock | None = None,
        max_body: int = MAX_BODY,
        freshness: float = FRESHNESS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``clock`` stamps arrivals; ``auth_clock`` (the real one unless a test says
        otherwise) judges signature freshness, which is about the network, not the
        simulated business day."""
        super().__init__(host, port, tls=tls)
        self.db_path = Path(db_path)
        self.clock = clock
        self.max_body = max_body
        self.operator_token = operator_token
        self._verifier = RequestVerifier(host_key, window=freshness, clock=auth_clock)
        self._store: AlarmStore | None = None

    def opened(self) -> None:
        self._store = AlarmStore(self.db_path, self.clock)

    def create_app(self) -> FastAPI:
        assert self._store is not None
        return create_app(self._store, self._verifier, self.operator_token, self.max_body)

    def closed(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    *,
    host_key_file: str | Path | None,
    operator_token_file: str | Path | None = None,
    pki: Pki | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). ``on_ready(host, port)`` is where
    the CLI prints ``listening on HOST:PORT``. Missing or bad secret files raise
    ConfigError first: a center that cannot tell the host's alarms from forgeries must
    not start. With ``pki`` it serves HTTPS with its ``alarm-center`` certificate and
    requires a client certificate from that CA (mutual TLS); without, plain HTTP."""
    if host_key_file is None:
        raise ConfigError("--host-key-file", "", "required: only alarms the host signed count")
    key = load_host_key(host_key_file)
    token = load_token(operator_token_file) if operator_token_file is not None else None
    tls = None
    if pki is not None:
        tls = server_context(
            pki.service("alarm-center"), source=str(pki.directory), key="alarm-center"
        )
    center = AlarmCenter(db_path, host, port, host_key=key, operator_token=token, tls=tls)
    run_until_signalled(center, on_ready, stop)
