"""Enterprise online banking as a library: each call is one request to the host's API.

Tests, the demo and ``atm bank enterprise ...`` drive the same calls. The client holds
the bearer token of its last login (user or administrator) in memory only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from sim.phone.client import PhoneApiError, phone_tls

__all__ = ["BankApiError", "EnterpriseClient"]


class BankApiError(PhoneApiError):
    """The host refused a call (``status``, ``detail``), or could not be reached (0)."""


class EnterpriseClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        ca: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url, timeout=timeout, trust_env=False, verify=phone_tls(ca)
        )
        self.token = token

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EnterpriseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BankApiError(0, f"cannot reach the bank at {self.http.base_url}: {exc}") from exc
        if response.is_success:
            return response.json() if response.content else {}
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise BankApiError(response.status_code, str(detail))

    # -- users --------------------------------------------------------------------------

    def login(
        self, company: str, user: str, password: str, role: str, department: str
    ) -> dict[str, Any]:
        body = {
            "company": company,
            "user": user,
            "password": password,
            "role": role,
            "department": department,
        }
        answer: dict[str, Any] = self._call("POST", "/enterprise/sessions", body)
        self.token = answer["token"]
        return answer

    def session(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/enterprise/session")
        return result

    def logout(self) -> dict[str, Any]:
        self._call("DELETE", "/enterprise/session")
        self.token = None
        return {"logged_out": True}

    def balance(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/enterprise/accounts/{account}/balance")
        return result

    def statement(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/enterprise/accounts/{account}/statement")
        return result

    def transfer(self, source: str, target: str, amount: int) -> dict[str, Any]:
        body = {"source": source, "target": target, "amount": amount}
        result: dict[str, Any] = self._call("POST", "/enterprise/transfers", body)
        return result

    def payout(self, account: str, beneficiary: str, amount: int) -> dict[str, Any]:
        body = {"account": account, "beneficiary": beneficiary, "amount": amount}
        result: dict[str, Any] = self._call("POST", "/enterprise/payouts", body)
        return result

    def approve(self, payout_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/enterprise/payouts/{payout_id}/approval")
        return result

    # -- administrators -----------------------------------------------------------------

    def admin_login(self, admin: str, password: str) -> dict[str, Any]:
        body = {"admin": admin, "password": password}
        answer: dict[str, Any] = self._call("POST", "/enterprise/admin/sessions", body)
        self.token = answer["token"]
        return answer

    def table(self, company: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/enterprise/admin/companies/{company}/table")
        return result

    def changes(self, company: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", f"/enterprise/admin/companies/{company}/changes"
        )
        return result

    def propose(
        self,
        company: str,
        role: str,
        department: str,
        operations: list[str],
        accounts: list[str],
    ) -> dict[str, Any]:
        body = {
            "company": company,
            "role": role,
            "department": department,
            "operations": operations,
            "accounts": accounts,
        }
        result: dict[str, Any] = self._call("POST", "/enterprise/admin/changes", body)
        return result

    def decide(self, change_id: str, approve: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/enterprise/admin/changes/{change_id}/decision", {"approve": approve}
        )
        return result
