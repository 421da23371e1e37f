"""``atm carrier``: a mobile operator's network-location lookup, simulated.

A terminal with no GPS fix and no fixed site (a mobile POS, a phone banking app) reports
location source ``none``; the bank then asks the operator where the device is attached
(seed 003). ``GET /locate?terminal_id=XXXX`` answers
``{terminal_id, lat, lon, accuracy_m, source: "carrier", cell_id}``, 404 for a terminal
the operator does not know (:mod:`sim.carrier.table`).

Where a device is, is personal data: a lookup must be signed by the bank's host with the
key they share (:mod:`sim.service_auth`), like its posts to the alarm center; anyone
else gets 401. FastAPI under uvicorn (:mod:`sim.asgi_service`), described at
``/openapi.json``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel

from atm_common.tls import server_context
from sim.asgi_service import AsgiService, run_until_signalled
from sim.carrier.table import TERMINAL_ID, CellLocation, default_location, load_table
from sim.pki import Pki
from sim.service_app import BodyLimit, ServiceError, install_errors, service_api, signed_by_host
from sim.service_auth import FRESHNESS, RequestVerifier, load_host_key

MAX_BODY = 1024  # lookups are GETs: there is nothing to send


class LocationOut(BaseModel):
    terminal_id: str
    lat: float
    lon: float
    accuracy_m: float
    source: str
    cell_id: str


class ErrorOut(BaseModel):
    error: str
    field: str | None = None


def create_app(table: Mapping[str, CellLocation] | None, verifier: RequestVerifier) -> FastAPI:
    """The lookup over ``table`` (None: made-up answers for every terminal)."""
    app = service_api(
        title="Carrier network location (simulated)", version="2", description=__doc__
    )
    install_errors(app)
    app.add_middleware(BodyLimit, max_body=MAX_BODY)
    refusals: dict[int | str, dict[str, object]] = {
        code: {"model": ErrorOut} for code in (400, 401, 404)
    }

    @app.get("/health", tags=["probes"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/locate", responses=refusals, dependencies=[Depends(signed_by_host(verifier))])
    def locate(
        request: Request,
        terminal_id: Annotated[str | None, Query(description="1-64 letters, digits, _ . -")] = None,
    ) -> LocationOut:
        """Where the terminal's SIM is attached (the bank's host, signed)."""
        ids = request.query_params.getlist("terminal_id")
        if len(ids) != 1 or not TERMINAL_ID.fullmatch(ids[0]):
            raise ServiceError(
                400,
                "exactly one terminal_id of 1-64 letters, digits, _ . - is required",
                "terminal_id",
            )
        tid = ids[0]
        found = default_location(tid) if table is None else table.get(tid)
        if found is None:
            raise ServiceError(404, f"terminal {tid} is not attached")
        return LocationOut(**found.as_dict())

    return app


class CarrierService(AsgiService):
    """The lookup service on a background thread; ``table`` None means made-up answers;
    ``tls`` (a server context requiring client certificates) serves HTTPS, mutual TLS."""

    name = "carrier"

    def __init__(
        self,
        table: Mapping[str, CellLocation] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        host_key: bytes,
        freshness: float = FRESHNESS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, tls=tls)
        self.table = table
        self._verifier = RequestVerifier(host_key, window=freshness)

    def create_app(self) -> FastAPI:
        return create_app(self.table, self._verifier)


def serve(
    table_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    *,
    host_key_file: str | Path,
    pki: Pki | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); ``on_ready(host, port)`` is where
    the CLI prints ``listening on HOST:PORT``. A bad table or key raises ConfigError first.
    With ``pki`` it serves HTTPS with its ``carrier`` certificate and requires a client
    certificate from that CA (mutual TLS); without, plain HTTP."""
    key = load_host_key(host_key_file)
    table = load_table(table_path) if table_path is not None else None
    tls = None
    if pki is not None:
        tls = server_context(pki.service("carrier"), source=str(pki.directory), key="carrier")
    service = CarrierService(table, host, port, host_key=key, tls=tls)
    run_until_signalled(service, on_ready, stop)
