"""The bank app's payment-app binding, on the phone (``atm phone bind|binding|bindings|unbind``).

The customer is signed in by a verified phone session (``atm phone request`` +
``verify``): its request id is the bearer token. ``bind`` asks the bank for a binding
address and renders it as a QR code PNG for the payment app to scan (or, with
``--push USER``, has a binding message pushed to that app user).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx is imported when a step runs, not when the parser is built
    from sim.phone.client import PhoneClient

STEPS = ("bind", "binding", "bindings", "unbind")


def add_steps(steps: Any) -> None:
    bind = steps.add_parser("bind", help="bind an account to a payment app (QR or push)")
    bind.add_argument("request_id", help="a verified phone session (atm phone verify)")
    bind.add_argument("account", help="the account to bind")
    bind.add_argument("--push", metavar="APP_USER", help="push a binding message instead")
    bind.add_argument("--qr", default="binding-qr.png", help="where to write the QR code PNG")
    status = steps.add_parser("binding", help="where a binding session is")
    status.add_argument("request_id", help="a verified phone session")
    status.add_argument("session_id", help="what the bind step answered")
    listing = steps.add_parser("bindings", help="this customer's payment-app bindings")
    listing.add_argument("request_id", help="a verified phone session")
    unbind = steps.add_parser("unbind", help="revoke a binding at the bank")
    unbind.add_argument("request_id", help="a verified phone session")
    unbind.add_argument("binding_id", help="what the bindings step lists")


def _call(phone: PhoneClient, request_id: str, method: str, path: str, body: Any = None) -> Any:
    response = phone.http.request(
        method, path, json=body, headers={"Authorization": f"Bearer {request_id}"}
    )
    if response.is_success:
        return response.json()
    from sim.phone.client import PhoneApiError

    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise PhoneApiError(response.status_code, str(detail))


def bind(
    phone: PhoneClient,
    request_id: str,
    account: str,
    *,
    push: str | None = None,
    qr: str | Path | None = None,
) -> dict[str, Any]:
    """Open a binding session; with an address and ``qr``, write the QR code PNG there."""
    body: dict[str, Any] = {"account": account, "path": "push" if push else "app_qr"}
    if push:
        body["app_user"] = push
    answer: dict[str, Any] = _call(phone, request_id, "POST", "/payapp/sessions", body)
    if answer.get("address") and qr is not None:
        answer["qr_png"] = str(render_png(answer["address"], qr))
    return answer


def render_png(address: str, path: str | Path, scale: int = 6) -> Path:
    """The bank app's QR code of ``address``: a PNG (segno; error correction M, quiet zone
    4) that the payment app scans from the image (:func:`sim.payapp.qr.decode_png`)."""
    import segno

    segno.make_qr(address, error="m").save(str(path), kind="png", scale=scale, border=4)
    return Path(path)


def step(phone: PhoneClient, args: argparse.Namespace) -> Any:
    if args.step == "bind":
        return bind(phone, args.request_id, args.account, push=args.push, qr=args.qr)
    if args.step == "binding":
        return _call(phone, args.request_id, "GET", f"/payapp/sessions/{args.session_id}")
    if args.step == "bindings":
        return _call(phone, args.request_id, "GET", "/payapp/bindings")
    return _call(phone, args.request_id, "DELETE", f"/payapp/bindings/{args.binding_id}")


_PHONE = "atm phone --ca var/pki/ca.pem --phone +4915100000006"
EXAMPLES = {
    "phone bind": f"{_PHONE} bind REQUEST_ID 1000000001 --qr bind.png",
    "phone binding": f"{_PHONE} binding REQUEST_ID SESSION_ID",
    "phone bindings": f"{_PHONE} bindings REQUEST_ID",
    "phone unbind": f"{_PHONE} unbind REQUEST_ID BINDING_ID",
}
