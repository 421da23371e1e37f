"""The enterprise online banking routes on the host's HTTP API (``/enterprise/...``).

Log in as a role in a department (``POST /enterprise/sessions``) for a bearer token and
the session's view; every other call sends the token and is checked again against the
permission table. Administrators maintain the table under ``/enterprise/admin/...``
with their own tokens (maker-checker). Refusals are ``{"detail": ...}`` with 401 (no
valid session or login refused, one message whatever was wrong), 403 (not permitted),
404, 409 or 422; every one is journaled. Tokens never reach the log.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.
import logging
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from atm_common.clock import Clock
from sim.host.enterprise.admin import AdminDesk
from sim.host.enterprise.bank import EnterpriseBank
from sim.host.enterprise.errors import EnterpriseError, Unauthorised
from sim.host.enterprise.policy import PolicyBook
from sim.host.enterprise.schema import PAYOUT_ACCOUNT, ensure_schema
from sim.host.ledger import Ledger, transaction

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    scheme_name="enterpriseToken",
    description="The token of POST /enterprise/sessions (users) or /enterprise/admin/sessions",
    auto_error=False,
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


class LoginIn(BaseModel):
    company: str = Field(
        description="The company's online banking account", examples=["ACME-TRUST"]
    )
    user: str
    password: str = Field(min_length=1, max_length=200)
    role: str = Field(
        description="asset_manager, trustee, settlor, beneficiary, outsourced_manager"
    )
    department: str


class AccountOut(BaseModel):
    account: str
    label: str
    currency: str
    ledger_balance: int | None = Field(default=None, description="Only with the balance operation")
    available: int | None = None


class SessionOut(BaseModel):
    user: str
    company: str
    role: str
    department: str
    operations: list[str] = Field(description="What this role in this department may do")
    accounts: list[AccountOut] = Field(description="The fund accounts it may do it on")


class LoginOut(SessionOut):
    token: str = Field(description="Bearer token: keep it secret")
    expires_in: int = Field(description="Seconds")


class LineOut(BaseModel):
    id: int
    at: str
    kind: str
    status: str
    amount: int = Field(description="Minor units; negative leaves the account")
    counterpart: str


class StatementOut(AccountOut):
    lines: list[LineOut]


class TransferIn(BaseModel):
    source: str = Field(description="Fund account debited")
    target: str = Field(description="Fund account credited")
    amount: int = Field(gt=0, description="Minor units")


class TransferOut(TransferIn):
    transfer_id: int


class PayoutIn(BaseModel):
    account: str
    beneficiary: str = Field(min_length=1, max_length=34, description="External account")
    amount: int = Field(gt=0)


class PayoutOut(BaseModel):
    id: str
    account_id: str
    beneficiary: str
    amount: int
    maker: str
    approver: str | None
    status: str = Field(description="pending (held) until another user approves, then paid")


class AdminLoginIn(BaseModel):
    admin: str
    password: str = Field(min_length=1, max_length=200)


class AdminLoginOut(BaseModel):
    admin: str
    token: str
    expires_in: int


class EntryOut(BaseModel):
    role: str
    department: str
    operations: list[str]
    accounts: list[str]


class TableOut(BaseModel):
    company: str
    version: int = Field(description="The policy version: moves with every applied change")
    entries: list[EntryOut]


class ChangeIn(BaseModel):
    company: str
    role: str
    department: str
    operations: list[str] = Field(description="The entry's new operations ([] removes it)")
    accounts: list[str]


class ChangeOut(ChangeIn):
    id: str
    maker: str
    checker: str | None
    status: str = Field(description="pending, applied or rejected")


class DecisionIn(BaseModel):
    approve: bool = Field(description="true applies the change, false rejects it")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthorised("no valid session: log in")
    return credentials.credentials


class EnterpriseApi:
    """The user and administrator desks on one connection, and their routes."""

    def __init__(
        self, conn: sqlite3.Connection, clock: Clock, ledger: Ledger, currency: str
    ) -> None:
        ensure_schema(conn)
        with transaction(conn):
            conn.execute(
                "INSERT INTO accounts (id, kind, normal, currency) VALUES (?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                (PAYOUT_ACCOUNT, "gl", "credit", currency),
            )
        policy = PolicyBook(conn)
        self.bank = EnterpriseBank(conn, clock, ledger, policy)
        self.admin = AdminDesk(conn, clock, policy)

    def install(self, app: FastAPI) -> None:
        @app.exception_handler(EnterpriseError)
        async def refused(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, EnterpriseError)
            route = getattr(request.scope.get("route"), "path", "?")
            log.info("%s %s refused (%d): %s", request.method, route, exc.status, exc)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

        app.include_router(self.router())

    def router(self) -> APIRouter:
        bank, admin = self.bank, self.admin
        r = APIRouter(prefix="/enterprise", tags=["enterprise"])
        refusals: dict[int | str, dict[str, Any]] = {
            code: {"description": "refused: {detail}"} for code in (401, 403, 404, 409, 422)
        }

        @r.post("/sessions", status_code=201, responses=refusals)
        async def login(body: LoginIn) -> LoginOut:
            """Log in as a role in a department: the operations and fund accounts the
            company's table opens to it. A role or department not held is refused like a
            wrong password (401), and nothing of the company is shown."""
            out = bank.login(body.company, body.user, body.password, body.role, body.department)
            return LoginOut(**out)

        @r.get("/session", responses=refusals)
        async def session(credentials: Bearer = None) -> SessionOut:
            """The session's view, as the table says now."""
            return SessionOut(**bank.view(_token(credentials)))

        @r.delete("/session", status_code=204, responses=refusals)
        async def logout(credentials: Bearer = None) -> None:
            bank.logout(_token(credentials))

        @r.get("/accounts/{account}/balance", responses=refusals)
        async def balance(account: str, credentials: Bearer = None) -> AccountOut:
            return AccountOut(**bank.balance(_token(credentials), account))

        @r.get("/accounts/{account}/statement", responses=refusals)
        async def statement(
            account: str,
            credentials: Bearer = None,
            limit: int = Query(default=50, ge=1, le=500),
        ) -> StatementOut:
            return StatementOut(**bank.statement(_token(credentials), account, limit))

        @r.post("/transfers", status_code=201, responses=refusals)
        async def transfer(body: TransferIn, credentials: Bearer = None) -> TransferOut:
            """Between two fund accounts the role may transfer on."""
            return TransferOut(
                **bank.transfer(_token(credentials), body.source, body.target, body.amount)
            )

        @r.post("/payouts", status_code=201, responses=refusals)
        async def payout(body: PayoutIn, credentials: Bearer = None) -> PayoutOut:
            """To an external account: the amount is held until another user approves."""
            out = bank.payout(_token(credentials), body.account, body.beneficiary, body.amount)
            return PayoutOut(**out)

        @r.post("/payouts/{payout_id}/approval", responses=refusals)
        async def approve(payout_id: str, credentials: Bearer = None) -> PayoutOut:
            """Approve another user's payout (the approve operation on its account)."""
            return PayoutOut(**bank.approve(_token(credentials), payout_id))

        @r.post("/admin/sessions", status_code=201, responses=refusals, tags=["enterprise admin"])
        async def admin_login(body: AdminLoginIn) -> AdminLoginOut:
            return AdminLoginOut(**admin.login(body.admin, body.password))

        @r.get("/admin/companies/{company}/table", responses=refusals, tags=["enterprise admin"])
        async def table(company: str, credentials: Bearer = None) -> TableOut:
            """A company's permission table: (role, department) -> operations x accounts."""
            return TableOut(**admin.table(_token(credentials), company))

        @r.get("/admin/companies/{company}/changes", responses=refusals, tags=["enterprise admin"])
        async def changes(company: str, credentials: Bearer = None) -> list[ChangeOut]:
            return [ChangeOut(**c) for c in admin.changes(_token(credentials), company)]

        @r.post("/admin/changes", status_code=201, responses=refusals, tags=["enterprise admin"])
        async def propose(body: ChangeIn, credentials: Bearer = None) -> ChangeOut:
            """Propose a new entry for (role, department): pending until another
            administrator approves it."""
            out = admin.propose(
                _token(credentials),
                body.company,
                body.role,
                body.department,
                body.operations,
                body.accounts,
            )
            return ChangeOut(**out)

        @r.post(
            "/admin/changes/{change_id}/decision", responses=refusals, tags=["enterprise admin"]
        )
        async def decide(change_id: str, body: DecisionIn, credentials: Bearer = None) -> ChangeOut:
            """Approve (applied at once: in force from the next request) or reject; never
            by the change's maker (403)."""
            return ChangeOut(**admin.decide(_token(credentials), change_id, body.approve))

        return r
