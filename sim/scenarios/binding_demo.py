"""Binding accounts to the payment app in the demo and the tests: the people's side.

A :class:`BindingWorld` knows where the payment server and the bank's phone API are and
the key the two share; its helpers play the customer on the bank app (a verified phone
session, then ``bind``), the payment app (scan the QR code *from the PNG*, confirm, the
SMS code from the simulated network, the payment password) and the reconciliation of
the two sides' records (:func:`agreement`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atm_common.tls import TlsFiles, client_context
from sim.host import db
from sim.payapp.client import PayappClient, PayappError
from sim.payapp.qr import decode_png
from sim.phone import binding as bank_app
from sim.phone.client import PhoneClient
from sim.pki import Pki
from sim.service_auth import load_host_key, sign_request
from sim.services import ServiceProcess, log_args, service_process

PASSWORD = "pay-123456"  # the demo app users' payment password (published, like the demo keys)
_CODE = re.compile(r"\b(\d{6})\b")


@contextlib.contextmanager
def payapp_process(
    workdir: Path, key_file: Path, pki: Pki | None, port: int = 0
) -> Iterator[ServiceProcess]:
    """``atm payapp-server`` with its own database in ``workdir`` (the SMS inbox on)."""
    args = ["--db", str(workdir / "payapp.db"), "--key-file", str(key_file), "--sms-inbox"]
    args += ["--tls-dir", str(pki.directory)] if pki is not None else ["--plain"]
    args += log_args(workdir / "payapp.log")
    with service_process("payapp-server", args, port) as service:
        yield service


def host_args(payapp_url: str, key_file: Path) -> list[str]:
    """What ``atm host`` needs to bind accounts at that payment server."""
    return ["--payapp", payapp_url, "--payapp-key-file", str(key_file)]


@dataclasses.dataclass
class BindingWorld:
    payapp_url: str
    api_url: str
    host_db: Path
    key_file: Path
    ca: Path | None
    state: Path  # the apps' state directory
    signed_in: dict[str, str] = dataclasses.field(default_factory=dict)  # phone -> request id

    def app(self, user: str) -> PayappClient:
        return PayappClient(self.payapp_url, user, state=self.state, ca=self.ca)

    def register(self, user: str, password: str = PASSWORD) -> None:
        with self.app(user) as app:
            app.register(password)

    def bank_session(self, phone: str) -> tuple[PhoneClient, str]:
        """The customer signs in to the bank app: a phone session with its SMS code."""
        client = PhoneClient(self.api_url, phone, ca=self.ca)
        if phone in self.signed_in:  # still signed in: one bank app session per customer
            return client, self.signed_in[phone]
        request_id = client.request()["request_id"]
        code = None
        for _ in range(200):
            code = client.latest_code()
            if code:
                break
            time.sleep(0.05)
        assert code is not None, "no SMS code reached the phone"
        client.verify(code)
        self.signed_in[phone] = request_id
        return client, request_id

    def sms_code(self, app: PayappClient, phone: str, after: int) -> str:
        """The newest code the payment server texted ``phone`` (message id over ``after``)."""
        for message in reversed(app.sms(phone)):
            if message["id"] > after and (match := _CODE.search(message["text"])):
                return match.group(1)
        raise AssertionError(f"no new payment SMS code for {phone}")

    def last_sms_id(self, app: PayappClient, phone: str) -> int:
        inbox = app.sms(phone)
        return int(inbox[-1]["id"]) if inbox else 0

    def finish(
        self,
        app: PayappClient,
        phone: str,
        *,
        codes: tuple[str | None, ...] = (None,),
        passwords: tuple[str, ...] = (PASSWORD,),
    ) -> dict[str, Any]:
        """Confirm, the SMS code(s) (None: the right one), the password(s); the last answer."""
        before = self.last_sms_id(app, phone)
        app.confirm()
        right = self.sms_code(app, phone, before)
        answer: dict[str, Any] = {}
        for code in codes:
            answer = app.code(code or right)
            if answer["status"] == "failed":
                return answer
        for password in passwords:
            answer = app.password(password)
            if answer["status"] in ("failed", "pending"):
                break
        return answer

    def bind_app_qr(
        self, user: str, phone: str, account: str, qr: Path, **kw: Any
    ) -> dict[str, Any]:
        """The bank app shows a QR code (PNG), the payment app scans it and goes on."""
        client, request_id = self.bank_session(phone)
        with client:
            session = bank_app.bind(client, request_id, account, qr=qr)
        with self.app(user) as app:
            app.scan(decode_png(session["qr_png"]))
            return self.finish(app, phone, **kw) | {"session_id": session["session_id"]}

    def bind_push(self, user: str, phone: str, account: str, **kw: Any) -> dict[str, Any]:
        """The bank asks the payment server to push a message; the user opens it."""
        client, request_id = self.bank_session(phone)
        with client:
            session = bank_app.bind(client, request_id, account, push=user)
        with self.app(user) as app:
            messages = app.messages()  # the newest is this session's
            app.open_message(int(messages[-1]["id"]))
            return self.finish(app, phone, **kw) | {"session_id": session["session_id"]}

    # -- what each side holds -------------------------------------------------------------

    def bank_bindings(self) -> list[dict[str, Any]]:
        conn = db.connect_readonly(self.host_db)
        try:
            rows = conn.execute("SELECT * FROM payapp_bindings ORDER BY created_at, id")
            return [dict(r) for r in rows.fetchall()]
        finally:
            conn.close()

    def bank_sessions(self) -> dict[str, dict[str, Any]]:
        conn = db.connect_readonly(self.host_db)
        try:
            rows = conn.execute("SELECT id, status, reason, path FROM binding_sessions")
            return {r["id"]: dict(r) for r in rows.fetchall()}
        finally:
            conn.close()

    def payapp_bindings(self) -> list[dict[str, Any]]:
        """The payment server's records, read as the bank reconciles (signed GET)."""
        key = load_host_key(self.key_file)
        url = f"{self.payapp_url}/bank/bindings"
        request = urllib.request.Request(url, headers=sign_request(key, "GET", "/bank/bindings"))
        handlers: list[Any] = [urllib.request.ProxyHandler({})]
        if self.ca is not None:
            tls = client_context(TlsFiles(self.ca))
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        with urllib.request.build_opener(*handlers).open(request, timeout=5) as response:
            return list(json.load(response))

    def settled(self, timeout: float = 15.0) -> list[str]:
        """Wait until no binding is pending at the payment server; the disagreements left."""
        deadline = time.monotonic() + timeout
        while True:
            problems = agreement(self.bank_bindings(), self.payapp_bindings())
            pending = [b for b in self.payapp_bindings() if b["status"] == "pending"]
            if (not problems and not pending) or time.monotonic() > deadline:
                return problems


def agreement(bank: list[dict[str, Any]], payapp: list[dict[str, Any]]) -> list[str]:
    """Every binding live on one side is live on the other, with the same status; a
    binding the bank refused (or never heard of yet) is never active at the payment app."""
    problems = []
    at_bank = {b["id"]: b for b in bank}
    for binding in payapp:
        mine = at_bank.pop(binding["binding_id"], None)
        status = binding["status"]
        if status in ("active", "revoked"):
            if mine is None or mine["status"] != status:
                problems.append(f"{binding['binding_id']}: payment app {status}, bank {mine}")
        elif mine is not None:
            problems.append(f"{binding['binding_id']}: payment app {status}, bank has it")
    for left in at_bank.values():
        problems.append(f"{left['id']}: only the bank has it ({left['status']})")
    return problems


def wait_status(app: PayappClient, binding_id: str, status: str, timeout: float = 15.0) -> bool:
    """Until the app sees ``binding_id`` in ``status`` (the bank's answer came back)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(b["binding_id"] == binding_id and b["status"] == status for b in app.bindings()):
                return True
        except PayappError:
            pass
        time.sleep(0.1)
    return False
