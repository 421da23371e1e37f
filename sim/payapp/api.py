"""The payment server's HTTP API (FastAPI, described at ``/openapi.json``).

Two audiences, two kinds of proof: the bank's host signs its requests with the key the
two companies share (:mod:`sim.service_auth`, the ``/bank/...`` routes); an app user
shows the bearer token it got when it registered (the ``/app/...`` routes). Refusals are
``{"error", "field"}`` with their status (:mod:`sim.payapp.errors`); nothing is changed
by a refused request except a counted wrong code or password.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations.
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError

from sim.payapp.errors import Invalid
from sim.payapp.store import PayStore
from sim.service_app import BodyLimit, ServiceError, install_errors, signed_by_host
from sim.service_auth import RequestVerifier

MAX_BODY = 16 * 1024

DESCRIPTION = """\
A third-party payment company's server, simulated (see docs/binding.md).

The bank: `POST /bank/sessions` (signed) asks for a binding address for one account
(`path` `atm_qr`/`app_qr`), or for a binding message pushed to an app user (`push`);
`POST /bank/bindings/{id}/revocation` revokes; `GET /bank/bindings` lists for
reconciliation. Results go back to the bank's `callback_url` through a durable outbox.

The app: `POST /app/users` registers (payment password; the answer's token is the app's
bearer token), then `POST /app/scans` (the decoded QR address), `.../confirm` (an SMS
code goes to the phone the bank holds), `.../code`, `.../password`; `GET /app/messages`,
`GET /app/bindings`, `POST /app/bindings/revocation`.
"""


class ErrorOut(BaseModel):
    error: str
    field: str | None = None


class SessionIn(BaseModel):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
    path: Literal["atm_qr", "app_qr", "push"]
    account_ref: str = Field(pattern=r"^[0-9a-f]{16,64}$", description="the bank's opaque ref")
    masked_account: str = Field(max_length=40)
    holder: str = Field(max_length=80)
    phone: str = Field(pattern=r"^\+?[0-9]{6,15}$")
    callback_url: str = Field(pattern=r"^https?://", max_length=200)
    expires_at: float
    app_user: str | None = Field(default=None, pattern=r"^[a-z0-9_.-]{2,32}$")


class SessionOut(BaseModel):
    address: str
    expires_at: float


class UserIn(BaseModel):
    user: str = Field(pattern=r"^[a-z0-9_.-]{2,32}$")
    payment_password: str = Field(min_length=6, max_length=64)


class ScanIn(BaseModel):
    address: str = Field(max_length=300)


class CodeIn(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$")


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=64)


class TokenIn(BaseModel):
    binding_token: str = Field(min_length=16, max_length=64)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


def app_user(store: PayStore) -> Callable[..., Awaitable[str]]:
    """A dependency: the app user whose bearer token the request carries, or 401."""
    scheme = HTTPBearer(scheme_name="appToken", auto_error=False)

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(scheme)] = None,
    ) -> str:
        user = store.user_by_token(credentials.credentials) if credentials else None
        if user is None:
            raise ServiceError(401, "an app user's token is required", None)
        return user

    return dependency


def create_app(store: PayStore, verifier: RequestVerifier, *, sms_inbox: bool = False) -> FastAPI:
    """The API over ``store``; ``sms_inbox`` adds the simulated SMS network (demo)."""
    app = FastAPI(title="Payment app server (simulated)", version="1", description=DESCRIPTION)
    install_errors(app)
    app.add_middleware(BodyLimit, max_body=MAX_BODY)
    bank = Depends(signed_by_host(verifier))
    user = Depends(app_user(store))

    @app.get("/health", tags=["probes"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bank/sessions", responses=_errors(400, 401, 404, 409, 410), tags=["bank"])
    def open_session(body: Annotated[bytes, bank]) -> SessionOut:
        """A binding address for one account (or a message pushed to ``app_user``);
        the same request again gets the same answer."""
        try:
            request = SessionIn.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise Invalid(f"malformed session request: {exc}".splitlines()[0]) from None
        return SessionOut(**store.open_session(request.model_dump()))

    @app.post("/bank/bindings/{binding_id}/revocation", responses=_errors(401, 404), tags=["bank"])
    def bank_revoke(binding_id: str, _: Annotated[bytes, bank]) -> dict[str, Any]:
        """The bank revoked this binding (idempotent)."""
        return store.revoke_by_bank(binding_id)

    @app.get("/bank/bindings", responses=_errors(401), tags=["bank"])
    def bank_bindings(_: Annotated[bytes, bank]) -> list[dict[str, Any]]:
        """Every binding, for reconciliation with the bank's records."""
        return store.bindings()

    @app.post("/app/users", status_code=201, responses=_errors(409), tags=["app"])
    def register(body: UserIn) -> dict[str, str]:
        """A new app user; the token is shown once: it is the app's bearer token."""
        return {"user": body.user, "token": store.register(body.user, body.payment_password)}

    @app.post("/app/scans", responses=_errors(400, 401, 403, 404, 409, 410), tags=["app"])
    def scan(body: ScanIn, who: Annotated[str, user]) -> dict[str, Any]:
        """Claim a binding address: the masked account to show the user."""
        return store.scan(who, body.address)

    @app.post("/app/sessions/{handle}/confirm", responses=_errors(401, 404, 409, 410), tags=["app"])
    def confirm(handle: str, who: Annotated[str, user]) -> dict[str, Any]:
        """The user confirmed the account: an SMS code goes to the bank's phone on file."""
        return store.confirm(who, handle)

    @app.post("/app/sessions/{handle}/code", responses=_errors(401, 404, 409, 410), tags=["app"])
    def code(handle: str, body: CodeIn, who: Annotated[str, user]) -> dict[str, Any]:
        """Check the SMS code (three tries)."""
        return store.check_code(who, handle, body.code)

    @app.post(
        "/app/sessions/{handle}/password", responses=_errors(401, 404, 409, 410), tags=["app"]
    )
    def password(handle: str, body: PasswordIn, who: Annotated[str, user]) -> dict[str, Any]:
        """Check the payment password (three tries); binds, pending the bank's answer."""
        return store.check_password(who, handle, body.password)

    @app.get("/app/messages", responses=_errors(401), tags=["app"])
    def messages(who: Annotated[str, user]) -> list[dict[str, Any]]:
        """Binding messages the bank asked to push to this user."""
        return store.messages(who)

    @app.get("/app/bindings", responses=_errors(401), tags=["app"])
    def bindings(who: Annotated[str, user]) -> list[dict[str, Any]]:
        """This user's bindings (masked accounts; never an account number)."""
        return [{k: v for k, v in b.items() if k != "session_id"} for b in store.bindings(who)]

    @app.post("/app/bindings/lookup", responses=_errors(401, 404), tags=["app"])
    def lookup(body: TokenIn, who: Annotated[str, user]) -> dict[str, Any]:
        """The binding behind one of this user's opaque tokens."""
        return store.binding_by_token(who, body.binding_token)

    @app.post("/app/bindings/revocation", responses=_errors(401, 404), tags=["app"])
    def unbind(body: TokenIn, who: Annotated[str, user]) -> dict[str, Any]:
        """Unbind; the bank is told through the outbox."""
        return store.revoke_by_app(who, body.binding_token)

    if sms_inbox:

        @app.get("/dev/sms", tags=["development"])
        def sms(request: Request) -> list[dict[str, Any]]:
            """The simulated SMS network's inbox of ``?phone=`` (demo only)."""
            return store.sms_inbox(request.query_params.get("phone", ""))

    return app
