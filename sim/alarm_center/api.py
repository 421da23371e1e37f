"""The alarm center's HTTP API: FastAPI, described at ``/openapi.json`` (``/docs``).

Who may do what, and why:

* ``POST /alarms`` and ``POST /alarms/{alarm_id}/updates``: the bank's host only. Each
  request is signed with the key the host and the center share (:mod:`sim.service_auth`);
  an unsigned, badly signed, stale or replayed one is answered 401, logged, and stored
  nowhere. Before this, anyone on the network could post an alarm under the id the real
  one was about to use.
* ``GET /alarms``, ``GET /alarms/{alarm_id}``, ``GET /conflicts``: the alarm desk, with
  its bearer token. The listing names cards, accounts and where a person is standing.
* ``GET /health``: anyone (probes).

``POST /alarms`` answers 201 stored, 200 for an identical repeat (the outbox retries until
it hears an answer), 409 for the same ``alarm_id`` with other content (recorded as a
conflict, logged at ERROR, never acknowledged as a delivery), 400 naming the bad field,
411 without a length and 413 above the body cap.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sim.alarm_center.contract import (
    LOCATION_SOURCES,
    MAX_EVIDENCE,
    REPORTED_SOURCES,
    REQUIRED,
    AlarmValidationError,
    validate_alarm,
)
from sim.alarm_center.store import AlarmStore
from sim.service_app import (
    BodyLimit,
    ServiceError,
    error_response,
    install_errors,
    operator_only,
    service_api,
    signed_by_host,
)
from sim.service_auth import RequestVerifier

log = logging.getLogger(__name__)

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_EVIDENCE = {
    "type": "array",
    "maxItems": MAX_EVIDENCE,
    "items": {
        "type": "object",
        "required": ["content_type", "data_base64"],
        "additionalProperties": False,
        "properties": {
            "content_type": {"type": "string", "examples": ["image/jpeg"]},
            "data_base64": {"type": "string", "contentEncoding": "base64"},
        },
    },
}
ALARM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": list(REQUIRED),  # the contract's own list: the schema cannot drift from it
    "properties": {
        "alarm_id": {"type": "string", "description": "Random id; the idempotency key"},
        "time": {"type": "string", "format": "date-time"},
        "terminal_id": {"type": "string"},
        "terminal_ip": {"type": "string", "description": "IPv4 or IPv6"},
        "location": {
            "type": "object",
            "additionalProperties": False,
            "required": ["lat", "lon", "source", "age"],
            "properties": {
                "lat": _NUMBER_OR_NULL,
                "lon": _NUMBER_OR_NULL,
                "source": {"enum": list(LOCATION_SOURCES)},
                "age": _NUMBER_OR_NULL,
                "accuracy_m": {"type": "number"},
                "cell_id": {"type": "string"},
                "site": {"type": "string", "description": "The registered site's name"},
                "reported": {
                    "type": "object",
                    "description": "What the terminal reported, when the register placed"
                    " the alarm (source register)",
                    "additionalProperties": False,
                    "required": ["lat", "lon", "source", "age"],
                    "properties": {
                        "lat": {"type": "number"},
                        "lon": {"type": "number"},
                        "source": {"enum": list(REPORTED_SOURCES)},
                        "age": _NUMBER_OR_NULL,
                    },
                },
                "distance_m": {
                    "type": "number",
                    "description": "Metres between the registered site and the reported place",
                },
            },
        },
        "masked_pan": {"type": "string", "examples": ["476173******0051"]},
        "account": {"type": "string"},
        "amount_requested": {"type": "integer", "minimum": 0, "description": "Minor units"},
        "evidence": _EVIDENCE,
    },
}
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["update_id", "time"],
    "properties": {
        "update_id": {"type": "string", "description": "The follow-up's idempotency key"},
        "time": {"type": "string", "format": "date-time"},
        "amount_requested": {"type": "integer", "minimum": 0},
        "evidence": _EVIDENCE,
    },
}
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


class ErrorOut(BaseModel):
    error: str
    field: str | None = Field(default=None, description="Dotted path of the bad field")


class Ack(BaseModel):
    alarm_id: str
    status: Literal["stored", "duplicate"]


class UpdateAck(Ack):
    update_id: str


class ConflictOut(ErrorOut):
    alarm_id: str
    status: Literal["conflict"] = "conflict"


class Health(BaseModel):
    status: str


class AlarmsOut(BaseModel):
    alarms: list[dict[str, Any]]


class ConflictsOut(BaseModel):
    conflicts: list[dict[str, Any]]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a JSON body the handler reads itself (the signature covers its bytes)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ConflictOut if code == 409 else ErrorOut} for code in codes}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _decode(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServiceError(400, f"body is not valid JSON: {exc}") from None


def _conflict(request: Request, alarm_id: str, what: str) -> JSONResponse:
    peer = request.client.host if request.client else "?"
    log.error(
        "ALARM CONFLICT: %s from %s reuses an id with other content; the stored copy is kept,"
        " the other recorded under conflicts (a broken host, or its key has leaked)",
        what,
        peer,
    )
    message = f"{what} is already stored with other content; recorded as a conflict"
    body = ConflictOut(error=message, field="alarm_id", alarm_id=alarm_id)
    return JSONResponse(body.model_dump(), status_code=409)


def create_app(
    store: AlarmStore, verifier: RequestVerifier, operator_token: str | None, max_body: int
) -> FastAPI:
    """The API over ``store``: posts verified by ``verifier``, reads by ``operator_token``
    (None: nobody reads over HTTP; ``atm alarm-center list`` reads the file)."""
    app = service_api(title="Alarm center (simulated)", version="2", description=DESCRIPTION)
    install_errors(app)
    app.add_middleware(BodyLimit, max_body=max_body)
    signed = signed_by_host(verifier)
    operator = Depends(operator_only(operator_token))

    @app.exception_handler(AlarmValidationError)
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AlarmValidationError)
        log.warning("%s %s refused: %s", request.method, request.url.path, exc)
        return error_response(400, str(exc), exc.field)

    @app.get("/health", tags=["probes"])
    def health() -> Health:
        return Health(status="ok")

    @app.post(
        "/alarms",
        status_code=201,
        responses={200: {"model": Ack}, **_refusals(400, 401, 409, 411, 413)},
        openapi_extra=_body(ALARM_SCHEMA),
        tags=["host"],
    )
    def post_alarm(request: Request, response: Response, body: bytes = Depends(signed)) -> Any:
        """Raise a duress alarm (the bank's host, signed)."""
        alarm = validate_alarm(_decode(body))
        outcome = store.add(alarm)
        if outcome == "conflict":
            return _conflict(request, alarm.alarm_id, f"alarm {alarm.alarm_id}")
        if outcome == "stored":
            log.warning(
                "ALARM %s from terminal %s stored", alarm.alarm_id, alarm.record["terminal_id"]
            )
        else:
            response.status_code = 200
        return Ack(alarm_id=alarm.alarm_id, status=outcome)

    @app.post(
        "/alarms/{alarm_id}/updates",
        status_code=201,
        responses={200: {"model": UpdateAck}, **_refusals(400, 401, 404, 409, 411, 413)},
        openapi_extra=_body(UPDATE_SCHEMA),
        tags=["host"],
    )
    def post_update(
        alarm_id: str, request: Request, response: Response, body: bytes = Depends(signed)
    ) -> Any:
        """Follow up an alarm: the amount asked later, camera snapshots (the host, signed)."""
        decoded = _decode(body)
        outcome = store.add_update(alarm_id, decoded)
        if outcome is None:
            raise ServiceError(404, "no such alarm")
        update_id = str(decoded.get("update_id")) if isinstance(decoded, dict) else ""
        if outcome == "conflict":
            return _conflict(request, alarm_id, f"update {update_id} of alarm {alarm_id}")
        if outcome == "duplicate":
            response.status_code = 200
        return UpdateAck(alarm_id=alarm_id, update_id=update_id, status=outcome)

    @app.get("/alarms", dependencies=[operator], responses=_refusals(401, 403), tags=["desk"])
    def list_alarms() -> AlarmsOut:
        """Every alarm in arrival order, evidence summarised (the alarm desk's token)."""
        return AlarmsOut(alarms=store.alarms())

    @app.get(
        "/alarms/{alarm_id}",
        dependencies=[operator],
        responses=_refusals(401, 403, 404),
        tags=["desk"],
    )
    def get_alarm(alarm_id: str) -> dict[str, Any]:
        """One alarm with its evidence as base64 (the alarm desk's token)."""
        alarm = store.get(alarm_id)
        if alarm is None:
            raise ServiceError(404, "no such alarm")
        return alarm

    @app.get("/conflicts", dependencies=[operator], responses=_refusals(401, 403), tags=["desk"])
    def list_conflicts() -> ConflictsOut:
        """Copies refused because their id was taken by other content."""
        return ConflictsOut(conflicts=store.conflicts())

    return app
