"""The phone simulator: each step of a cardless withdrawal as one call to the host's API.

Why a library first: tests, the demo and a bank-side tester at a shell all drive the same
steps; the command line (:mod:`sim.phone.cli`, ``atm phone ...``) only prints what the
calls return. The client remembers the session's request id and the last reservation id,
so a script can run ``request() ... confirm()`` without passing them around; the command
line, one process per step, passes them explicitly.
"""

from __future__ import annotations

import base64
import re
import ssl
from pathlib import Path
from typing import Any

import httpx

from atm_common.errors import AtmError, ConfigError
from atm_common.tls import TlsFiles, client_context

_CODE = re.compile(r"\b(\d{6})\b")


class PhoneApiError(AtmError):
    """The host refused a step (4xx/5xx) or could not be reached; ``status`` is the HTTP
    status (0 when there was no answer) and ``detail`` the host's explanation."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"{status}: {detail}" if status else detail)


def phone_tls(ca: str | Path | None) -> ssl.SSLContext | bool:
    """What the phone verifies an https API against: the bank's CA file ``ca`` (and the
    server's name), or, without one, the system's store, which knows no bank's own CA.
    A phone shows no certificate of its own: phones are people."""
    if ca is None:
        return True
    if not Path(ca).is_file():
        raise ConfigError("--ca", "", f"{ca} does not exist")
    try:
        return client_context(TlsFiles(Path(ca)), source="--ca", key="ca")
    except ssl.SSLError as exc:
        raise ConfigError("--ca", "", f"{ca}: not a CA certificate ({exc})") from None


class PhoneClient:
    """One phone (number) talking to the bank host's API at ``base_url``; an https API
    is verified against ``ca`` (the bank's CA certificate file)."""

    def __init__(
        self,
        base_url: str,
        phone: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        ca: str | Path | None = None,
    ) -> None:
        self.phone = phone
        self._own = client is None
        self.http = client or httpx.Client(
            base_url=base_url, timeout=timeout, trust_env=False, verify=phone_tls(ca)
        )
        self.request_id: str | None = None
        self.reservation_id: str | None = None

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> PhoneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> Any:
        try:
            response = self.http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = " (the API's certificate is not from a CA this phone trusts: --ca FILE)"
            raise PhoneApiError(
                0, f"cannot reach the bank at {self.http.base_url}: {exc}{hint}"
            ) from exc
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise PhoneApiError(response.status_code, str(detail))

    def _request_id(self, request_id: str | None) -> str:
        found = request_id or self.request_id
        if not found:
            raise PhoneApiError(0, "no cardless request yet: call request() first")
        return found

    def _reservation_id(self, reservation_id: str | None) -> str:
        found = reservation_id or self.reservation_id
        if not found:
            raise PhoneApiError(0, "no reservation yet: call confirm() first")
        return found

    # -- the steps ------------------------------------------------------------------------

    def request(self) -> dict[str, Any]:
        """Ask for a cardless withdrawal; the bank texts a code."""
        answer: dict[str, Any] = self._call("POST", "/cardless/requests", {"phone": self.phone})
        self.request_id = answer["request_id"]
        return answer

    def messages(self) -> list[dict[str, Any]]:
        """This phone's SMS inbox: the simulated network's, which only a host started
        with ``--sms-inbox`` serves (it shows every code to anyone who asks)."""
        try:
            found: list[dict[str, Any]] = self._call("GET", f"/phones/{self.phone}/messages")
        except PhoneApiError as exc:
            if exc.status == 404:
                raise PhoneApiError(
                    404, "the host serves no SMS inbox: start atm host with --sms-inbox"
                ) from exc
            raise
        return found

    def latest_code(self) -> str | None:
        """The 6-digit code in the newest SMS that has one (what the customer would read)."""
        for message in reversed(self.messages()):
            match = _CODE.search(message["text"])
            if match:
                return match.group(1)
        return None

    def verify(self, code: str, request_id: str | None = None) -> dict[str, Any]:
        rid = self._request_id(request_id)
        answer: dict[str, Any] = self._call(
            "POST", f"/cardless/requests/{rid}/verification", {"code": code}
        )
        return answer

    def capture_face(
        self, image: str | Path | bytes, *, consent: bool = True, request_id: str | None = None
    ) -> dict[str, Any]:
        """Send a photo (a file, or JPEG/PNG bytes) for the face check."""
        try:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
        except OSError as exc:
            raise PhoneApiError(0, f"cannot read the photo: {exc}") from exc
        rid = self._request_id(request_id)
        body = {"consent": consent, "image_base64": base64.b64encode(data).decode()}
        answer: dict[str, Any] = self._call("POST", f"/cardless/requests/{rid}/face", body)
        return answer

    def accounts(self, request_id: str | None = None) -> list[dict[str, Any]]:
        rid = self._request_id(request_id)
        found: list[dict[str, Any]] = self._call("GET", f"/cardless/requests/{rid}/accounts")
        return found

    def quote(
        self,
        account: str,
        amount: int,
        method: str,
        request_id: str | None = None,
        hold_minutes: float | None = None,
    ) -> dict[str, Any]:
        rid = self._request_id(request_id)
        body: dict[str, Any] = {"account": account, "amount": amount, "method": method}
        if hold_minutes is not None:
            body["hold_minutes"] = hold_minutes
        answer: dict[str, Any] = self._call("POST", f"/cardless/requests/{rid}/quotes", body)
        return answer

    def confirm(self, quote_id: str, request_id: str | None = None) -> dict[str, Any]:
        """Accept the quote: returns the reservation (with its code, once, if any)."""
        rid = self._request_id(request_id)
        answer: dict[str, Any] = self._call(
            "POST", f"/cardless/requests/{rid}/reservation", {"quote_id": quote_id}
        )
        self.reservation_id = answer["reservation_id"]
        return answer

    def joint_confirm(
        self, quote_id: str, password: str, code: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """Accept a quote on a joint account: pending until another co-owner approves."""
        rid = self._request_id(request_id)
        body = {"quote_id": quote_id, "password": password, "code": code}
        answer: dict[str, Any] = self._call(
            "POST", f"/cardless/requests/{rid}/joint-reservation", body
        )
        return answer

    def joint_reservation(self, request_id: str | None = None) -> dict[str, Any]:
        """Awaiting approval, reserved (with the reservation), or ended with nothing held."""
        rid = self._request_id(request_id)
        answer: dict[str, Any] = self._call("GET", f"/cardless/requests/{rid}/joint-reservation")
        if answer.get("reservation"):
            self.reservation_id = answer["reservation"]["reservation_id"]
        return answer

    def status(self, reservation_id: str | None = None) -> dict[str, Any]:
        rid = self._reservation_id(reservation_id)
        answer: dict[str, Any] = self._call("GET", f"/cardless/reservations/{rid}")
        return answer

    def cancel(self, reservation_id: str | None = None) -> dict[str, Any]:
        rid = self._reservation_id(reservation_id)
        answer: dict[str, Any] = self._call("DELETE", f"/cardless/reservations/{rid}")
        return answer

    def events(self, reservation_id: str | None = None) -> list[dict[str, Any]]:
        rid = self._reservation_id(reservation_id)
        found: list[dict[str, Any]] = self._call("GET", f"/cardless/reservations/{rid}/events")
        return found

    def route(self, lat: float, lon: float, amount: int) -> dict[str, Any]:
        """ATMs that can pay ``amount``, soonest reached first."""
        answer: dict[str, Any] = self._call("GET", "/atms/route", lat=lat, lon=lon, amount=amount)
        return answer
