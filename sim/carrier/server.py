"""``atm carrier``: a mobile operator's network-location lookup, simulated.

A terminal with no GPS fix and no fixed site (a mobile POS, a phone banking app) reports
location source ``none``; the bank then asks the operator where the device is attached
(seed 003). This service answers ``GET /locate?terminal_id=XXXX`` with
``{terminal_id, lat, lon, accuracy_m, source: "carrier", cell_id}``.

With a table (TOML or JSON, ``[terminals.ID] lat lon [accuracy_m] [cell_id]``) it knows
exactly those terminals and answers 404 for others, like an operator that has never seen
the SIM. Without one it makes up a location per terminal id that is deterministic (a hash
of the id), so tests and demos replay, and never 404s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import threading
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from atm_common.errors import ConfigError
from sim.http_service import JsonHandler, ThreadedService, run_until_signalled

log = logging.getLogger(__name__)

DEFAULT_CENTER = (26.5783, 106.7135)  # made-up locations scatter ~20 km around this
TERMINAL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclasses.dataclass(frozen=True)
class CellLocation:
    terminal_id: str
    lat: float
    lon: float
    accuracy_m: float
    cell_id: str

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "source": "carrier"}


def default_location(terminal_id: str) -> CellLocation:
    """A stable made-up location: the same id always lands in the same cell."""
    h = hashlib.sha256(terminal_id.encode()).digest()
    u = [int.from_bytes(h[i : i + 4], "big") / 2**32 for i in (0, 4, 8)]
    lac, ci = int.from_bytes(h[12:14], "big"), int.from_bytes(h[14:17], "big")
    return CellLocation(
        terminal_id,
        round(DEFAULT_CENTER[0] + (u[0] - 0.5) * 0.4, 6),
        round(DEFAULT_CENTER[1] + (u[1] - 0.5) * 0.4, 6),
        float(round(100 + u[2] * 1900)),
        f"001-01-{lac}-{ci}",
    )


def load_table(path: str | Path) -> dict[str, CellLocation]:
    """Read a TOML or JSON table; a bad entry raises ConfigError naming file and key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            source, "", f"not valid {'JSON' if source.endswith('.json') else 'TOML'}: {exc}"
        ) from None
    terminals = data.get("terminals") if isinstance(data, dict) else None
    if not isinstance(terminals, dict):
        raise ConfigError(source, "terminals", "a table of terminal id -> location is required")
    table = {}
    for tid, entry in terminals.items():
        key = f"terminals.{tid}"
        if not TERMINAL_ID.fullmatch(tid) or not isinstance(entry, dict):
            raise ConfigError(source, key, "needs a plain id and a table of lat, lon")
        made_up = default_location(tid)
        try:
            lat, lon = float(entry["lat"]), float(entry["lon"])
            accuracy = float(entry.get("accuracy_m", made_up.accuracy_m))
        except KeyError as exc:
            raise ConfigError(source, f"{key}.{exc.args[0]}", "is required") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                source, key, f"lat, lon and accuracy_m must be numbers: {exc}"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and accuracy >= 0):
            raise ConfigError(source, key, "lat/lon out of range or negative accuracy_m")
        table[tid] = CellLocation(
            tid, lat, lon, accuracy, str(entry.get("cell_id", made_up.cell_id))
        )
    return table


class _Httpd(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], table: Mapping[str, CellLocation] | None) -> None:
        super().__init__(address, _Handler)
        self.table = table


class _Handler(JsonHandler):
    server: _Httpd
    server_version = "atm-carrier/1"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
            return
        if url.path.rstrip("/") != "/locate":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no resource {url.path}"})
            return
        ids = urllib.parse.parse_qs(url.query).get("terminal_id", [])
        if len(ids) != 1 or not TERMINAL_ID.fullmatch(ids[0]):
            self._send(
                HTTPStatus.BAD_REQUEST,
                {
                    "error": "exactly one terminal_id of 1-64 letters, digits, _ . - is required",
                    "field": "terminal_id",
                },
            )
            return
        tid = ids[0]
        table = self.server.table
        found = default_location(tid) if table is None else table.get(tid)
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"terminal {tid} is not attached"})
            return
        self._send(HTTPStatus.OK, found.as_dict())


class CarrierService(ThreadedService):
    """The lookup service on a background thread; ``table`` None means made-up answers."""

    name = "carrier"

    def __init__(
        self,
        table: Mapping[str, CellLocation] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.table = table

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        return _Httpd(address, self.table)


def serve(
    table_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); ``on_ready(host, port)`` is where
    the CLI prints ``listening on HOST:PORT``. A bad table raises ConfigError first."""
    table = load_table(table_path) if table_path is not None else None
    run_until_signalled(CarrierService(table, host, port), on_ready, stop)
