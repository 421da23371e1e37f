"""What every one of the simulator's HTTP services needs in its FastAPI app and FastAPI
does not give: a request body cap, refusals as ``{"error", "field"}``, and, as
dependencies that ``/openapi.json`` shows as security schemes, the host's signature
(:mod:`sim.service_auth`) and the operator's bearer token. The alarm center and the
carrier build their apps from these; :mod:`sim.asgi_service` serves them.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies' annotations
# at run time, and those name security schemes local to the function that builds them.
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from atm_common.errors import AtmError
from sim.service_auth import SIGNATURE_HEADER, AuthError, RequestVerifier, bearer_matches

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 2.0  # how long a refused oversized body is read (so the client sees 413)


def service_api(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from
    files served by the app itself (``/static-offline-docs``): FastAPI's own pages load
    them from a public CDN, which a kiosk network or a bank lab may not reach (and which
    would see every visit)."""
    from fastapi_offline import FastAPIOffline

    return FastAPIOffline(**kwargs)


class ServiceError(AtmError):
    """A refusal a handler answers with: HTTP status, message, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_response(status: int, message: str, field: str | None = None, **kw: Any) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, **kw)


def install_errors(app: FastAPI) -> None:
    """Every refusal as ``{"error", "field"}``: the host's outbox reads ``error``."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc.status, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(400, str(first.get("msg", "invalid request")), field)


class BodyLimit:
    """ASGI middleware: a body must declare its length and stay under ``max_body``.

    The check is on ``Content-Length`` before anything is read, so an oversized alarm
    costs neither memory nor a signature check; uvicorn's parser then holds the client
    to the length it declared. A refused body is read and discarded up to a bound so
    that the client, still sending, gets to read the 413 instead of a reset.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if b"transfer-encoding" in headers:
            await error_response(411, "send a Content-Length, not chunks")(scope, receive, send)
            return
        if declared is None:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                await error_response(411, "a Content-Length is required")(scope, receive, send)
                return
        elif not declared.isdigit():
            await error_response(400, "a valid Content-Length is required")(scope, receive, send)
            return
        elif int(declared) > self.max_body:
            await self._drain(receive, int(declared))
            message = f"body of {int(declared)} bytes exceeds {self.max_body}"
            await error_response(413, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _drain(self, receive: Receive, length: int) -> None:
        if length > 4 * self.max_body:
            return  # not worth reading: the client may see its connection closed
        with anyio.move_on_after(DRAIN_TIMEOUT):
            more = True
            while more:
                message = await receive()
                more = message["type"] == "http.request" and bool(message.get("more_body"))


def request_target(scope: Scope) -> str:
    """The path and query exactly as the client sent them: what the host signed."""
    path = scope.get("raw_path") or str(scope["path"]).encode()
    query = scope.get("query_string") or b""
    return bytes(path).decode("latin-1") + ("?" + bytes(query).decode("latin-1") if query else "")


def signed_by_host(verifier: RequestVerifier) -> Callable[..., Awaitable[bytes]]:
    """A dependency: the request body, once the host's signature on the request verified."""
    scheme = APIKeyHeader(
        name=SIGNATURE_HEADER,
        scheme_name="hostSignature",
        description="HMAC-SHA256 by the bank's host over method, target, X-Atm-Timestamp, "
        "X-Atm-Nonce and the body's SHA-256 (sim/service_auth.py)",
        auto_error=False,
    )

    async def dependency(
        request: Request, _: Annotated[str | None, Security(scheme)] = None
    ) -> bytes:
        body = await request.body()
        try:
            verifier.verify(request.method, request_target(request.scope), request.headers, body)
        except AuthError as exc:
            peer = request.client.host if request.client else "?"
            log.warning("refused %s %s from %s: %s", request.method, request.url.path, peer, exc)
            raise ServiceError(
                401,
                f"the host's signature is required: {exc}",
                None,
                {"WWW-Authenticate": "ATM-HMAC-SHA256"},
            ) from None
        return body

    return dependency


def operator_only(token: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency: an operator's bearer token (constant-time compare), or 401/403."""
    scheme = HTTPBearer(
        scheme_name="operatorToken",
        description="The alarm desk's token (--operator-token-file)",
        auto_error=False,
    )

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(scheme)] = None,
    ) -> None:
        if token is None:
            raise ServiceError(403, "reading over HTTP is disabled (no operator token file)")
        if credentials is None or not bearer_matches(token, credentials.credentials):
            peer = request.client.host if request.client else "?"
            log.warning(
                "refused %s %s from %s: no valid operator token",
                request.method,
                request.url.path,
                peer,
            )
            raise ServiceError(
                401, "an operator token is required", None, {"WWW-Authenticate": "Bearer"}
            )

    return dependency
