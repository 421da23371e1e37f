"""The host's HTTP API for the customer's phone (cardless withdrawal) and ATM routing.

FastAPI, described at ``/openapi.json`` (and browsable at ``/docs``). It runs in the
host's own asyncio loop next to the ISO 8583 server and shares its SQLite connection,
so every handler is ``async`` and does its database work on the loop, one transaction
at a time, exactly like the ISO handlers; only face detection (CPU, ~0.1-0.5 s) goes to
a worker thread, so terminals are not kept waiting by a phone's photo.

Because the host's own memory and loop are at stake, nothing big gets in: a body over
``max_body`` bytes is refused (413) before it is read whole (:class:`BodyLimit`), and a
photo's pixel count is checked from its header before it is decoded. The simulated SMS
inbox, which hands out every code the bank texts, exists only with ``sms_inbox`` (demo).
Request and reservation ids are credentials: the log gets fingerprints of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sim.host.cardless.errors import PhoneError, TooManyRequests
from sim.host.cardless.faces import probe_template
from sim.host.cardless.phone import PhoneBank
from sim.host.cardless.tokens import redact
from sim.host.enterprise.api import EnterpriseApi
from sim.host.routing import RouteModel, rank_atms
from sim.service_app import service_api

log = logging.getLogger(__name__)

DESCRIPTION = """\
Cardless cash withdrawal, the phone's side (see docs/cardless.md):

1. `POST /cardless/requests` with the phone number: the bank texts a code
   (a host started with `--sms-inbox` shows it at `GET /phones/{phone}/messages`:
   there is no real SMS network).
2. `POST /cardless/requests/{id}/verification` with the code.
3. `POST /cardless/requests/{id}/face` with consent and a photo (base64 JPEG/PNG),
   compared with the face enrolled at the bank.
4. `GET /cardless/requests/{id}/accounts`, then `POST /cardless/requests/{id}/quotes`
   (account, amount, method): the fee is shown before anything is held.
5. `POST /cardless/requests/{id}/reservation` with the quote id: amount + fee are held
   and, for the code methods, the reservation code is returned (once) and texted.
6. `GET` / `DELETE /cardless/reservations/{id}`: status, or cancel (releases the hold).

`GET /atms/route` ranks the ATMs that can pay an amount by estimated arrival time.
Money is always an integer number of minor units (cents).
"""

Method = Literal["code", "face", "both"]

# The largest body any endpoint needs: a photo of MAX_IMAGE_BYTES (8 MiB) in base64
# (FaceIn's 12 000 000 characters) and its JSON around it.
MAX_BODY_BYTES = 12 * 1024 * 1024


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413, before it is read whole.

    Why in front of FastAPI: a handler's body is read completely into memory before any
    validation (a ``max_length`` included) can look at it. A declared Content-Length
    over the limit is refused without reading a byte; a body without one (chunked) is
    read up to the limit and refused as soon as it passes it. What was read is then
    handed to the app as one message, so nothing is read twice. The connection stays
    open: uvicorn discards the rest of a refused body as it arrives, so a client still
    sending reads the 413 instead of a reset.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: Send) -> None:
        text = f'{{"detail":"request body over {self.max_bytes} bytes"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(text)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": text})


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A ``receive`` that gives ``messages`` first, then waits on ``then`` (for the
    disconnect a streaming response listens for)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong; nothing was changed (except counted attempts)")


class PhoneIn(BaseModel):
    phone: str = Field(description="The customer's phone number", examples=["+4915100000006"])


class RequestOut(BaseModel):
    request_id: str = Field(description="The session's handle: keep it secret")
    status: str = Field(description="sent, verified, identified, reserved, failed or expired")
    expires_at: str
    reservation_id: str | None = None


class CodeIn(BaseModel):
    code: str = Field(pattern=r"^[0-9]{4,12}$", description="The code from the SMS")


class FaceIn(BaseModel):
    consent: bool = Field(description="The customer allows the bank to use this photo")
    image_base64: str = Field(
        max_length=12_000_000, description="A JPEG or PNG photo with exactly one face, base64"
    )


class FaceOut(BaseModel):
    match: bool = Field(description="Match or no match: how close is never told")
    attempts_left: int
    status: str = Field(description="identified on a match; failed when attempts ran out")


class AccountOut(BaseModel):
    account: str
    currency: str
    ledger_balance: int
    available: int
    locked: bool
    card_product: str = Field(description="Product of the customer's card on it: sets the fee")
    card: str | None = Field(description="That card, masked")


class QuoteIn(BaseModel):
    account: str
    amount: int = Field(gt=0, description="Minor units")
    method: Method = Field(description="How the cash is collected at the ATM")
    hold_minutes: float | None = Field(
        default=None, gt=0, description="Collect within this many minutes (at most the bank's)"
    )


class QuoteOut(BaseModel):
    quote_id: str
    account: str
    amount: int
    fee: int
    total: int = Field(description="amount + fee: what will be held")
    currency: str
    method: Method
    card_product: str
    fee_rule: str


class ConfirmIn(BaseModel):
    quote_id: str


class ReservationOut(BaseModel):
    reservation_id: str
    status: str = Field(description="active, used, cancelled, expired or refunded")
    account: str
    amount: int
    fee: int
    total: int
    currency: str
    method: Method
    attempts: int = Field(description="Failed checks at ATMs so far")
    expires_at: str
    created_at: str
    terminal_id: str | None
    refunded: int
    code: str | None = Field(
        default=None, description="Only in the confirmation, for code methods: type it at the ATM"
    )


class EventOut(BaseModel):
    at: str
    kind: str
    terminal_id: str | None
    detail: dict[str, Any]


class MessageOut(BaseModel):
    id: int
    text: str
    status: str = Field(description="pending (in the outbox) or delivered")
    created: str
    delivered_at: str | None


class AtmOut(BaseModel):
    terminal_id: str
    site: str
    lat: float
    lon: float
    distance_km: float = Field(description="Street distance estimate")
    congestion: float = Field(description="Travel-time factor of the traffic on the way (>= 1)")
    eta_min: float = Field(description="Travel time to the ATM with the congestion")
    sessions_per_hour: float
    wait_min: float = Field(description="Expected queue at the ATM")
    total_min: float = Field(description="eta + wait: the ranking key")


class ExcludedOut(BaseModel):
    terminal_id: str
    reason: str


class RouteOut(BaseModel):
    atms: list[AtmOut] = Field(description="Best first")
    excluded: list[ExcludedOut]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals an endpoint can answer (422 is FastAPI's own:
    its body validation, or ours with a plain ``detail`` string)."""
    return {code: {"model": ErrorOut} for code in codes}


def client_address(request: Request) -> str:
    """Who is calling, for the per-address throttles: the peer's address (uvicorn is run
    without proxy headers, so a client cannot name another address for itself)."""
    return request.client.host if request.client is not None else "unknown"


def create_app(
    bank: PhoneBank,
    route_model: RouteModel | None = None,
    *,
    sms_inbox: bool = False,
    max_body: int = MAX_BODY_BYTES,
    enterprise: EnterpriseApi | None = None,
) -> FastAPI:
    """The API over ``bank`` (which holds the host's connection and clock).

    ``sms_inbox`` adds ``GET /phones/{phone}/messages``, the simulated network's inbox:
    every text the bank sent that number, codes included, to anyone who asks. Only a
    demo or a test may want that; without it the route does not exist (404).
    ``enterprise`` adds enterprise online banking under ``/enterprise`` (docs/enterprise.md).
    """
    app = service_api(
        title="ATM bank host: cardless withdrawal", version="1", description=DESCRIPTION
    )
    app.add_middleware(BodyLimit, max_bytes=max_body)
    model = route_model or RouteModel()

    @app.exception_handler(PhoneError)
    async def phone_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, PhoneError) else 400
        # the route's template, not the path: the path holds the request or reservation id
        route = getattr(request.scope.get("route"), "path", "?")
        log.info("%s %s refused (%d): %s", request.method, route, status, redact(str(exc)))
        headers = None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)

    @app.post("/cardless/requests", status_code=201, responses=errors(423, 429), tags=["cardless"])
    async def create_request(body: PhoneIn, request: Request) -> RequestOut:
        """Start a cardless withdrawal: the bank texts a verification code to the phone.
        Any well-formed number gets this same answer, whether a customer has it or not
        (only the customer's phone gets a text). New sessions per phone and per address
        are throttled (429, Retry-After); a locked number is 423."""
        return RequestOut(**bank.request(body.phone, client_address(request)))

    @app.get("/cardless/requests/{request_id}", responses=errors(404), tags=["cardless"])
    async def get_request(request_id: str) -> RequestOut:
        """Where the phone session is."""
        return RequestOut(**bank.status(request_id))

    @app.post(
        "/cardless/requests/{request_id}/verification",
        responses=errors(403, 404, 409, 410, 423, 429),
        tags=["cardless"],
    )
    async def verify(request_id: str, body: CodeIn, request: Request) -> RequestOut:
        """Prove the phone with the SMS code (403 when wrong; attempts are limited per
        session, per phone number (423 when locked) and per address (429))."""
        return RequestOut(**bank.verify_code(request_id, body.code, client_address(request)))

    @app.post(
        "/cardless/requests/{request_id}/face",
        responses=errors(403, 404, 409, 410, 423, 503),
        tags=["cardless"],
    )
    async def face(request_id: str, body: FaceIn) -> FaceOut:
        """With consent, compare the photo's face with the one enrolled at the bank:
        match or no match. No face, several faces, a bad image or one of too many
        pixels: 422, and nothing is counted."""
        bank.enrolled(request_id, body.consent)  # cheap refusals before detection
        tolerance = bank.settings.face_tolerance
        probe = await asyncio.to_thread(probe_template, body.image_base64, tolerance)
        result = bank.face_checked(request_id, probe)
        return FaceOut(match=result.match, attempts_left=result.attempts_left, status=result.status)

    @app.get(
        "/cardless/requests/{request_id}/accounts",
        responses=errors(403, 404, 409, 410),
        tags=["cardless"],
    )
    async def accounts(request_id: str) -> list[AccountOut]:
        """The identified customer's accounts to withdraw from."""
        return [AccountOut(**a) for a in bank.accounts(request_id)]

    @app.post(
        "/cardless/requests/{request_id}/quotes",
        status_code=201,
        responses=errors(403, 404, 409, 410),
        tags=["cardless"],
    )
    async def quote(request_id: str, body: QuoteIn) -> QuoteOut:
        """Price a withdrawal (fee by the account's card product); holds nothing."""
        return QuoteOut(
            **bank.quote(request_id, body.account, body.amount, body.method, body.hold_minutes)
        )

    @app.post(
        "/cardless/requests/{request_id}/reservation",
        status_code=201,
        responses=errors(403, 404, 409, 410),
        tags=["cardless"],
    )
    async def confirm(request_id: str, body: ConfirmIn) -> ReservationOut:
        """Accept a quote: amount + fee are held until the ATM pays out, the
        reservation is cancelled, or it expires. A second confirmation is 409."""
        return ReservationOut(**bank.confirm(request_id, body.quote_id))

    @app.get("/cardless/reservations/{reservation_id}", responses=errors(404), tags=["cardless"])
    async def reservation(reservation_id: str) -> ReservationOut:
        """The reservation's state (never its code); expires it first if its time is up."""
        return ReservationOut(**bank.reservation(reservation_id))

    @app.delete(
        "/cardless/reservations/{reservation_id}", responses=errors(404, 409), tags=["cardless"]
    )
    async def cancel(reservation_id: str) -> ReservationOut:
        """Cancel an active reservation: the hold is released."""
        return ReservationOut(**bank.cancel(reservation_id))

    @app.get(
        "/cardless/reservations/{reservation_id}/events", responses=errors(404), tags=["cardless"]
    )
    async def events(reservation_id: str) -> list[EventOut]:
        """The bank's journal of this withdrawal, request to end."""
        return [EventOut(**e) for e in bank.events(reservation_id)]

    if sms_inbox:

        @app.get("/phones/{phone}/messages", responses=errors(), tags=["development"])
        async def messages(phone: str) -> list[MessageOut]:
            """The SMS the bank sent this phone (the simulated network's inbox; only with
            ``atm host --sms-inbox``: it hands every code to anyone who asks)."""
            return [MessageOut(**m) for m in bank.messages(phone)]

    @app.get("/atms/route", responses=errors(), tags=["routing"])
    async def route(
        lat: float = Query(ge=-90, le=90),
        lon: float = Query(ge=-180, le=180),
        amount: int = Query(gt=0, description="Minor units the ATM must be able to pay"),
    ) -> RouteOut:
        """ATMs in service with enough cash, by estimated arrival time (travel with
        simulated congestion + expected queue); see sim/host/routing.py for the model."""
        ranked = rank_atms(bank.conn, bank.clock.now(), lat, lon, amount, model)
        return RouteOut(
            atms=[AtmOut(**a) for a in ranked["atms"]],
            excluded=[ExcludedOut(**e) for e in ranked["excluded"]],
        )

    if enterprise is not None:
        enterprise.install(app)
    return app
