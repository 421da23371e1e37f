"""The bank app's binding routes on the phone API, and the payment server's callback.

The bank app proves its customer the way the phone API already does: a phone session
whose SMS code was verified (``POST /cardless/requests`` + ``.../verification``); its
request id is the bearer token here. The payment server proves itself by signing with
the key the two companies share (:mod:`sim.service_auth`). Installed on the phone API's
app by :func:`install`, so the phone API module itself is not touched.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations.
import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from sim.host.binding.desk import BindingDesk
from sim.host.cardless.errors import Forbidden, Unavailable, Unprocessable
from sim.service_app import ServiceError, signed_by_host
from sim.service_auth import RequestVerifier

ADDRESS_WAIT = 10.0  # seconds the bank app's request waits for the payment server's address
_SIGNED_IN = ("verified", "identified", "reserved")


class BindIn(BaseModel):
    account: str = Field(max_length=34)
    path: Literal["app_qr", "push"] = "app_qr"
    app_user: str | None = Field(default=None, pattern=r"^[a-z0-9_.-]{2,32}$")


class SessionOut(BaseModel):
    session_id: str
    path: str
    account: str
    status: str = Field(description="requested, address, bound, failed or expired")
    address: str | None = Field(description="The binding address to show as a QR code")
    reason: str | None
    binding_id: str | None
    expires_at: float


class BindingOut(BaseModel):
    binding_id: str
    account: str
    app_user: str = Field(description="masked")
    path: str
    status: str
    revoked_by: str | None


def install(app: FastAPI, desk: BindingDesk, key: bytes | None) -> None:
    """Add the routes; ``key`` None (no payment server configured): callbacks are 503."""
    bearer = HTTPBearer(scheme_name="phoneSession", auto_error=False)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)  # the payment server's signature refused
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    async def customer(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> str:
        row = None
        if credentials is not None:
            row = desk.conn.execute(
                "SELECT person_id, status, expires_at FROM cardless_requests WHERE id = ?",
                (credentials.credentials,),
            ).fetchone()
        if row is None or row["status"] not in _SIGNED_IN or row["expires_at"] <= desk.now():
            raise Forbidden("a verified phone session is required (Authorization: Bearer)")
        return str(row["person_id"])

    who = Depends(customer)

    @app.post("/payapp/sessions", status_code=201, tags=["payment app binding"])
    async def open_session(body: BindIn, person: Annotated[str, who]) -> SessionOut:
        """Bind an account: a QR code address (``app_qr``) or a message pushed to the
        app user (``push``). Waits up to 10 s for the payment server's answer."""
        app_user = body.app_user if body.path == "push" else None
        if body.path == "push" and app_user is None:
            raise Unprocessable("a pushed binding needs app_user")
        view = desk.start(person, body.account, body.path, app_user=app_user)
        deadline = asyncio.get_running_loop().time() + ADDRESS_WAIT
        while view["status"] == "requested" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            view = desk.view(view["session_id"])
        return SessionOut(**view)

    @app.get("/payapp/sessions/{session_id}", tags=["payment app binding"])
    async def get_session(session_id: str, person: Annotated[str, who]) -> SessionOut:
        """Where the binding session is (the address, then the outcome)."""
        return SessionOut(**desk.view(session_id, person))

    @app.get("/payapp/bindings", tags=["payment app binding"])
    async def bindings(person: Annotated[str, who]) -> list[BindingOut]:
        """The customer's bindings to payment apps."""
        return [BindingOut(**b) for b in desk.bindings(person)]

    @app.delete("/payapp/bindings/{binding_id}", tags=["payment app binding"])
    async def revoke(binding_id: str, person: Annotated[str, who]) -> BindingOut:
        """Revoke at the bank: the payment server is told."""
        desk.revoke(person, binding_id)
        found = [b for b in desk.bindings(person) if b["binding_id"] == binding_id]
        return BindingOut(**found[0])

    if key is None:

        @app.post("/payapp/callbacks", tags=["payment server"])
        async def no_callbacks() -> dict[str, Any]:
            raise Unavailable("no payment server is configured at this bank")

        return

    signed = Depends(signed_by_host(RequestVerifier(key)))

    @app.post("/payapp/callbacks", tags=["payment server"])
    async def callback(body: Annotated[bytes, signed]) -> dict[str, Any]:
        """The payment server's result (signed): bound, failed or revoked; idempotent.
        409 refuses a binding the bank no longer accepts (the session ended)."""
        try:
            decoded = json.loads(body)
        except ValueError:
            raise Unprocessable("the callback is not JSON") from None
        if not isinstance(decoded, dict):
            raise Unprocessable("the callback is not a JSON object")
        return desk.callback(decoded)
