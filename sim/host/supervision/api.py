"""``GET /terminals``: the fleet view of ``atm host status`` over the host's HTTP API.

Why on the host's API and behind the operator's bearer token: the bank's operations desk
wants the same list the CLI prints (mode, devices' attention and who must act, cash)
without a shell on the host, and that list tells a robber which machine is full and which
is being refilled, so no phone may read it. The token is the alarm desk's kind
(``--operator-token-file``, :func:`sim.service_auth.load_token`, constant-time compare);
without a token file the route answers 403 to everyone.
"""

from __future__ import annotations

import sqlite3

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sim.host.supervision.fleet import list_terminals
from sim.service_app import ServiceError, operator_only


class DeviceOut(BaseModel):
    kind: str
    state: str
    attention: str = Field(description="now, soon or none")
    actor: str = Field(description="who must act: operator, engineer or none")


class ExchangeOut(BaseModel):
    id: str = Field(description="the exchange id the 0800/181 handed out")
    ended_at: str
    difference: int = Field(description="found - expected, minor units")


class TerminalOut(BaseModel):
    terminal_id: str
    site: str | None
    status: str
    mode: str = Field(description="in_service, supervisor, exchange, out_of_service, ...")
    supervisor: str = Field(description="the role in supervisor mode, else empty")
    last_seen: str | None
    cash_on_hand: int | None = Field(description="the host's books, minor units")
    reported_cash: int | None = Field(description="what the terminal last reported")
    attention: str = Field(description="the worst of its devices: now, soon or none")
    devices: list[DeviceOut]
    last_exchange: ExchangeOut | None = Field(description="the last replenishment booked")


class FleetOut(BaseModel):
    terminals: list[TerminalOut]


def install_fleet(app: FastAPI, conn: sqlite3.Connection, token: str | None) -> None:
    """Add ``GET /terminals`` to ``app`` (the host's phone API app)."""

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.get(
        "/terminals",
        tags=["operator"],
        dependencies=[Depends(operator_only(token))],
        responses={401: {"description": "no or a wrong operator token"}, 403: {}},
    )
    async def terminals() -> FleetOut:
        """Every terminal as the bank sees it (``atm host status --json``)."""
        return FleetOut.model_validate({"terminals": list_terminals(conn)})
