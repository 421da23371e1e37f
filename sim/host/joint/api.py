"""The phone API's ``/joint/...`` routes: the co-owners' bank app (docs/joint-accounts.md).

Added to the host's FastAPI app by :func:`add_joint_routes`, beside the cardless routes,
sharing their error handler (a :class:`~sim.host.joint.phone.JointError` is a
``PhoneError``: one line, its HTTP status, nothing changed). The app's bearer token goes
in ``Authorization: Bearer ...``; it is never logged.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field

from sim.host.api import errors
from sim.host.joint.cardless import JointCardless
from sim.host.joint.phone import JointPhone

__all__ = ["add_joint_cardless_routes", "add_joint_routes"]


class ApprovalOut(BaseModel):
    approval_id: str = Field(description="The reference the ATM shows")
    account: str
    requester: str = Field(description="The co-owner asking (a binding: the candidate)")
    kind: str = Field(description="withdrawal, balance, transfer or bind")
    amount: int
    terminal_id: str | None
    target: str | None = Field(description="transfer: credit account; bind: the candidate")
    status: str = Field(description="pending, approved, rejected, expired, cancelled or used")
    decided_by: str | None
    created_at: str
    seconds_left: int


class DecisionIn(BaseModel):
    decision: Literal["approve", "reject"]


class TransferIn(BaseModel):
    account: str
    password: str = Field(pattern=r"^[0-9]{4,12}$", description="The account's password")
    code: str = Field(pattern=r"^[0-9]{4,12}$", description="Your own verification code")
    amount: int = Field(gt=0, description="Minor units")
    to: str = Field(description="The account to credit")


class BindIn(BaseModel):
    candidate: str = Field(description="The person to bind (their bank id)")
    identity: str = Field(min_length=1, max_length=64, description="Their identity document")
    code: str = Field(pattern=r"^[0-9]{4,12}$", description="The candidate's own code")


class JointReservationIn(BaseModel):
    quote_id: str
    password: str = Field(pattern=r"^[0-9]{4,12}$", description="The account's password")
    code: str = Field(pattern=r"^[0-9]{4,12}$", description="Your own verification code")


class JointReservationOut(BaseModel):
    request_id: str
    status: str = Field(
        description="awaiting_approval, reserved (frozen: see reservation), rejected,"
        " expired or cancelled (nothing held)"
    )
    approval: ApprovalOut
    reservation: dict[str, Any] | None = Field(
        description="The reservation once approved (its code only by SMS)"
    )


class JointMessageOut(BaseModel):
    id: int
    kind: str = Field(description="bill, or joint-approval, joint-lock, joint-outcome ...")
    account: str | None
    text: str
    created: str


def _token(authorization: str | None) -> str | None:
    if authorization and authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :].strip()
    return None


def add_joint_routes(app: FastAPI, phone: JointPhone) -> None:
    auth = Header(default=None, description="Bearer <the bank app's token>")

    @app.get("/joint/approvals", responses=errors(401), tags=["joint"])
    async def pending(authorization: str | None = auth) -> list[ApprovalOut]:
        """Requests waiting for this co-owner's decision (never their own)."""
        return [ApprovalOut(**a) for a in phone.pending(_token(authorization))]

    @app.get("/joint/approvals/{approval_id}", responses=errors(401, 404), tags=["joint"])
    async def approval(approval_id: str, authorization: str | None = auth) -> ApprovalOut:
        """One approval, for a co-owner of its account or its requester."""
        return ApprovalOut(**phone.approval(_token(authorization), approval_id))

    @app.post(
        "/joint/approvals/{approval_id}/decision",
        responses=errors(401, 403, 404, 409, 410),
        tags=["joint"],
    )
    async def decide(
        approval_id: str, body: DecisionIn, authorization: str | None = auth
    ) -> ApprovalOut:
        """Approve or reject. The first approval grants an operation (a binding needs
        every co-owner's); the requester cannot decide (403); a decided request 409,
        an expired one 410."""
        return ApprovalOut(**phone.decide(_token(authorization), approval_id, body.decision))

    @app.post(
        "/joint/transfers", status_code=202, responses=errors(403, 404, 409, 423), tags=["joint"]
    )
    async def transfer(body: TransferIn) -> ApprovalOut:
        """A transfer out, proved by the account's password and your own code; carried
        out when another co-owner approves (403 wrong, counted; 423 locked)."""
        return ApprovalOut(
            **phone.transfer(body.account, body.password, body.code, body.amount, body.to)
        )

    @app.post(
        "/joint/accounts/{account}/owners",
        status_code=202,
        responses=errors(401, 403, 404, 409, 423),
        tags=["joint"],
    )
    async def bind(account: str, body: BindIn, authorization: str | None = auth) -> ApprovalOut:
        """Ask to bind a new co-owner: their identity is verified, then every co-owner
        must authorise (the decision route) before the binding expires."""
        return ApprovalOut(
            **phone.bind(_token(authorization), account, body.candidate, body.identity, body.code)
        )

    @app.get("/joint/messages", responses=errors(401), tags=["joint"])
    async def messages(authorization: str | None = auth) -> list[JointMessageOut]:
        """What the bank sent this co-owner: approval requests, outcomes, locks, bills."""
        return [JointMessageOut(**m) for m in phone.messages(_token(authorization))]


def add_joint_cardless_routes(app: FastAPI, joint: JointCardless) -> None:
    """A cardless reservation on a joint account (docs/joint-accounts.md)."""
    path = "/cardless/requests/{request_id}/joint-reservation"

    @app.post(path, status_code=202, responses=errors(403, 404, 409, 423), tags=["joint"])
    async def confirm(request_id: str, body: JointReservationIn) -> JointReservationOut:
        """Accept a quote on a joint account with its password and your own code: the
        other co-owners are asked; nothing is held until one approves (403 wrong,
        counted; 423 locked)."""
        return JointReservationOut(
            **joint.confirm(request_id, body.quote_id, body.password, body.code)
        )

    @app.get(path, responses=errors(404), tags=["joint"])
    async def status(request_id: str) -> JointReservationOut:
        """Awaiting approval, reserved (with the reservation), or ended with nothing held."""
        return JointReservationOut(**joint.status(request_id))
