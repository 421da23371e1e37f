"""``atm alarm-center``: the police/security desk the bank's host raises duress alarms at.

A real HTTP server (stdlib ``ThreadingHTTPServer``) so the host's outbox is tested
against the failure modes it will meet in production: connection refused while the
center is down, a slow or crashed peer, 4xx for a payload that will never be accepted.

``POST /alarms`` takes one JSON alarm (see :mod:`sim.alarm_center.contract` for the
contract) and answers 201 when stored, 200 for a repeat of an ``alarm_id`` already
stored (the outbox retries until it hears an answer, so repeats are normal), 400 naming
the bad field, 411 without a length and 413 above ``max_body``. ``GET /alarms`` lists,
``GET /alarms/<id>`` shows one with its evidence, ``GET /health`` is for probes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from atm_common.clock import Clock
from sim.alarm_center.contract import AlarmValidationError, validate_alarm
from sim.alarm_center.store import AlarmStore
from sim.http_service import JsonHandler, ThreadedService, run_until_signalled

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024
DRAIN_LIMIT = 4 * MAX_BODY  # read and discard this much of a refused body, no more
DRAIN_TIMEOUT = 2.0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class _Httpd(ThreadingHTTPServer):
    # Joined on close, so no request thread touches the store after it is closed.
    daemon_threads = False

    def __init__(self, address: tuple[str, int], store: AlarmStore, max_body: int) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.max_body = max_body


class _Handler(JsonHandler):
    server: _Httpd
    server_version = "atm-alarm-center/1"

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        if path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif path == "/alarms":
            self._send(HTTPStatus.OK, {"alarms": self.server.store.alarms()})
        elif path.startswith("/alarms/"):
            alarm = self.server.store.get(urllib.parse.unquote(path[len("/alarms/") :]))
            if alarm is None:
                self._error(HTTPStatus.NOT_FOUND, "no such alarm")
            else:
                self._send(HTTPStatus.OK, alarm)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no resource {path or '/'}")

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        if path.startswith("/alarms/") and path.endswith("/updates"):
            self._post_update(urllib.parse.unquote(path[len("/alarms/") : -len("/updates")]))
            return
        if path != "/alarms":
            self._error(HTTPStatus.NOT_FOUND, f"no resource {path or '/'}")
            return
        body = self._read_body()
        if body is None:
            return
        try:
            decoded = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            alarm = validate_alarm(decoded)
        except (UnicodeDecodeError, ValueError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}")
            return
        except AlarmValidationError as exc:
            log.warning("alarm refused: %s", exc)
            self._error(HTTPStatus.BAD_REQUEST, str(exc), exc.field)
            return
        new, same = self.server.store.add(alarm)
        if new:
            log.warning(
                "ALARM %s from terminal %s stored", alarm.alarm_id, alarm.record["terminal_id"]
            )
            self._send(HTTPStatus.CREATED, {"alarm_id": alarm.alarm_id, "status": "stored"})
            return
        if not same:
            log.error("alarm %s repeated with different content; first copy kept", alarm.alarm_id)
        self._send(
            HTTPStatus.OK, {"alarm_id": alarm.alarm_id, "status": "duplicate", "identical": same}
        )

    def _post_update(self, alarm_id: str) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            decoded = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            if not isinstance(decoded, dict):
                raise AlarmValidationError(None, "an update must be a JSON object")
            stored = self.server.store.add_update(alarm_id, decoded)
        except (UnicodeDecodeError, ValueError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}")
            return
        except AlarmValidationError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), exc.field)
            return
        if stored is None:
            self._error(HTTPStatus.NOT_FOUND, "no such alarm")
        else:
            status = HTTPStatus.CREATED if stored else HTTPStatus.OK
            self._send(
                status, {"alarm_id": alarm_id, "status": "stored" if stored else "duplicate"}
            )

    def _read_body(self) -> bytes | None:
        """The request body, or None once an error has been answered."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "a valid Content-Length is required")
            return None
        if length > self.server.max_body:
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes exceeds {self.server.max_body}",
            )
            self._discard(length)
            return None
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read (bounded) what the client is still sending, so closing the socket does
        not reset it before it has read the 413."""
        self.connection.settimeout(DRAIN_TIMEOUT)
        left = min(length, DRAIN_LIMIT)
        with contextlib.suppress(OSError):
            while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                left -= len(chunk)


class AlarmCenter(ThreadedService):
    """The server with its store; ``start`` runs it on a background thread."""

    name = "alarm center"

    def __init__(
        self,
        db_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        super().__init__(host, port)
        self.db_path = Path(db_path)
        self.clock = clock
        self.max_body = max_body

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        store = AlarmStore(self.db_path, self.clock)
        try:
            return _Httpd(address, store, self.max_body)
        except OSError:
            store.close()
            raise

    def _closed(self, server: ThreadingHTTPServer) -> None:
        assert isinstance(server, _Httpd)
        server.store.close()


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). ``on_ready(host, port)`` is where
    the CLI prints ``listening on HOST:PORT``."""
    run_until_signalled(AlarmCenter(db_path, host, port), on_ready, stop)
