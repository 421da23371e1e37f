"""The payment app, simulated: one app user's calls to the payment server.

The app keeps, in a private state file per user, only its bearer token and, for each
binding, the opaque binding token and the masked account: never an account number
(the payment server does not know one either). Tests, the demo and ``atm payapp`` all
drive these same calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from atm_common.errors import AtmError
from atm_common.files import private_dir, write_private
from sim.phone.client import phone_tls


class PayappError(AtmError):
    """The payment server refused (``status``) or could not be reached (status 0)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"{status}: {detail}" if status else detail)


class PayappClient:
    """One app user (``user``) at the payment server ``base_url``; state in ``state``."""

    def __init__(
        self,
        base_url: str,
        user: str,
        *,
        state: str | Path | None = None,
        ca: str | Path | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.user = user
        self.http = httpx.Client(
            base_url=base_url, timeout=timeout, trust_env=False, verify=phone_tls(ca)
        )
        self.state_file = Path(state) / f"{user}.json" if state is not None else None
        self.state: dict[str, Any] = {"token": None, "bindings": {}, "session": None}
        if self.state_file is not None and self.state_file.is_file():
            self.state.update(json.loads(self.state_file.read_text(encoding="utf-8")))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PayappClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _save(self) -> None:
        if self.state_file is not None:
            private_dir(self.state_file.parent)
            write_private(self.state_file, json.dumps(self.state, indent=2))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {}
        if self.state.get("token"):
            headers["Authorization"] = f"Bearer {self.state['token']}"
        try:
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise PayappError(0, f"cannot reach the payment server: {exc}") from exc
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise PayappError(response.status_code, str(detail))

    def _session(self, session: str | None) -> str:
        found = session or self.state.get("session")
        if not found:
            raise PayappError(0, "no binding session: scan a QR code or open a message first")
        return str(found)

    # -- the steps ------------------------------------------------------------------------

    def register(self, payment_password: str) -> dict[str, Any]:
        answer = self._call(
            "POST", "/app/users", {"user": self.user, "payment_password": payment_password}
        )
        self.state["token"] = answer["token"]
        self._save()
        return {"user": self.user, "registered": True}

    def scan(self, address: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("POST", "/app/scans", {"address": address})
        self.state["session"] = answer["session"]
        self._save()
        return answer

    def open_message(self, message_id: int) -> dict[str, Any]:
        for message in self.messages():
            if message["id"] == message_id:
                return self.scan(str(message["address"]))
        raise PayappError(404, f"no binding message {message_id} for {self.user}")

    def confirm(self, session: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", f"/app/sessions/{self._session(session)}/confirm"))

    def code(self, code: str, session: str | None = None) -> dict[str, Any]:
        path = f"/app/sessions/{self._session(session)}/code"
        return dict(self._call("POST", path, {"code": code}))

    def password(self, password: str, session: str | None = None) -> dict[str, Any]:
        path = f"/app/sessions/{self._session(session)}/password"
        answer: dict[str, Any] = self._call("POST", path, {"password": password})
        if "binding_token" in answer:
            token = answer.pop("binding_token")  # kept by the app, never printed
            self.state["bindings"][answer["binding_id"]] = {
                "token": token,
                "account": answer["account"],
            }
            self.state["session"] = None
            self._save()
        return answer

    def messages(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/app/messages"))

    def bindings(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/app/bindings"))

    def unbind(self, binding_id: str, token: str | None = None) -> dict[str, Any]:
        """Revoke by the opaque token this app holds for ``binding_id`` (or a given one)."""
        held = self.state["bindings"].get(binding_id, {}).get("token")
        token = token or held
        if not token:
            raise PayappError(0, f"this app holds no token for binding {binding_id}")
        return dict(self._call("POST", "/app/bindings/revocation", {"binding_token": token}))

    def sms(self, phone: str) -> list[dict[str, Any]]:
        """The simulated SMS network's inbox (a server started with ``--sms-inbox``)."""
        response = self.http.get("/dev/sms", params={"phone": phone})
        if not response.is_success:
            raise PayappError(response.status_code, "no SMS inbox on this payment server")
        return list(response.json())
