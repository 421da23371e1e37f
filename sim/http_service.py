"""What the simulator's small HTTP services share: a JSON request handler, a threaded
server started and stopped as a unit, and running one until SIGINT/SIGTERM.

The alarm center and the carrier location service are deliberately plain standard-library
servers (they stand in for other organisations' systems); this keeps them that small.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 10.0  # a client that stalls mid-request is dropped
SHUTDOWN_POLL = 0.05  # how soon stop() is noticed; a select() timeout, not a busy loop


class JsonHandler(BaseHTTPRequestHandler):
    """JSON answers and errors; access lines go to logging, not stderr."""

    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, field: str | None = None) -> None:
        self._send(status, {"error": message, "field": field})


class ThreadedService:
    """A ThreadingHTTPServer on a background thread; ``start`` returns the bound port."""

    name = "service"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        raise NotImplementedError

    def _closed(self, server: ThreadingHTTPServer) -> None:
        """Release what the server held, after its last request finished."""

    def start(self) -> int:
        self._httpd = self._make_server((self.host, self.port))
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(SHUTDOWN_POLL,),
            name=f"{self.name}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("%s listening on %s:%d", self.name, self.host, self.port)
        return self.port

    def stop(self) -> None:
        """Stop listening and finish requests in flight. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._closed(httpd)
        log.info("%s stopped", self.name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_until_signalled(
    service: ThreadedService,
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
