"""A co-owner's bank app for joint accounts, over the host's phone API (``/joint/...``).

The app holds its bearer token (never logged); see docs/joint-accounts.md for the flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from sim.phone.client import PhoneApiError, phone_tls

__all__ = ["JointApp"]


class JointApp:
    def __init__(
        self, base_url: str, token: str, *, ca: str | Path | None = None, timeout: float = 10.0
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            trust_env=False,
            verify=phone_tls(ca),
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> JointApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise PhoneApiError(0, f"cannot reach the bank at {self.http.base_url}: {exc}") from exc
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise PhoneApiError(response.status_code, str(detail))

    def pending(self) -> list[dict[str, Any]]:
        """Requests waiting for this co-owner's decision."""
        return list(self._call("GET", "/joint/approvals"))

    def approval(self, approval_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/joint/approvals/{approval_id}"))

    def decide(self, approval_id: str, approve: bool) -> dict[str, Any]:
        decision = "approve" if approve else "reject"
        path = f"/joint/approvals/{approval_id}/decision"
        return dict(self._call("POST", path, {"decision": decision}))

    def bind(self, account: str, candidate: str, identity: str, code: str) -> dict[str, Any]:
        body = {"candidate": candidate, "identity": identity, "code": code}
        return dict(self._call("POST", f"/joint/accounts/{account}/owners", body))

    def messages(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/joint/messages"))
