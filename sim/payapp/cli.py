"""``atm payapp ...``: the payment app's steps at a shell, printing JSON; and the
``atm payapp-server`` options. Kept apart from the client so building the ``atm`` parser
imports neither httpx nor OpenCV."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.payapp.client import PayappClient

DEFAULT_URL = "https://127.0.0.1:8592"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="the payment server")
    parser.add_argument("--ca", help="CA certificate to verify an https payment server by")
    parser.add_argument("--user", required=True, help="the app user (2-32 of a-z 0-9 _ . -)")
    parser.add_argument(
        "--state", default="var/payapp-app", help="the app's private state directory"
    )
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("register", help="new app user; payment password on stdin")
    scan = steps.add_parser("scan", help="scan a binding QR code (a PNG) or open an address")
    what = scan.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="PNG of the QR code (the screen or the bank app)")
    what.add_argument("--address", help="the binding address itself")
    what.add_argument("--message", type=int, help="open a pushed binding message by id")
    steps.add_parser("confirm", help="confirm the account shown: an SMS code is sent")
    code = steps.add_parser("code", help="enter the SMS code")
    code.add_argument("code", help="the code the SMS carried")
    steps.add_parser("password", help="enter the payment password (stdin) to bind")
    steps.add_parser("messages", help="binding messages pushed to this user")
    steps.add_parser("bindings", help="this user's bindings")
    unbind = steps.add_parser("unbind", help="revoke a binding (the bank is told)")
    unbind.add_argument("binding_id", help="what the bindings step lists")
    sms = steps.add_parser("sms", help="the simulated SMS inbox of a phone (--sms-inbox)")
    sms.add_argument("phone", help="the phone number, e.g. +4915100000001")


def _secret() -> str:
    line = sys.stdin.readline().strip()
    if not line:
        raise ValueError("give the payment password on stdin")
    return line


def run(args: argparse.Namespace) -> int:
    from sim.payapp.client import PayappClient, PayappError
    from sim.payapp.qr import QrError

    with PayappClient(args.url, args.user, state=args.state, ca=args.ca) as app:
        try:
            result = _step(app, args)
        except (PayappError, QrError, ValueError) as exc:
            print(f"atm payapp: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2))
    return 0


def _step(app: PayappClient, args: argparse.Namespace) -> Any:
    step = args.step
    if step == "register":
        return app.register(_secret())
    if step == "scan":
        if args.message is not None:
            return app.open_message(args.message)
        if args.image is not None:
            from sim.payapp.qr import decode_png

            return app.scan(decode_png(args.image))
        return app.scan(args.address)
    if step == "confirm":
        return app.confirm()
    if step == "code":
        return app.code(args.code)
    if step == "password":
        return app.password(_secret())
    if step == "messages":
        return app.messages()
    if step == "bindings":
        return app.bindings()
    if step == "unbind":
        return app.unbind(args.binding_id)
    return app.sms(args.phone)


_APP = "atm payapp --ca var/pki/ca.pem --url https://127.0.0.1:8592 --user mia"
EXAMPLES = {
    "payapp-server": "atm payapp-server --tls-dir var/pki --key-file var/payapp.key --port 8592",
    "payapp": f"{_APP} register < password.txt\n{_APP} scan --image bind.png",
    "payapp register": f"{_APP} register < password.txt",
    "payapp scan": f"{_APP} scan --image bind.png",
    "payapp confirm": f"{_APP} confirm",
    "payapp code": f"{_APP} code 123456",
    "payapp password": f"{_APP} password < password.txt",
    "payapp messages": f"{_APP} messages",
    "payapp bindings": f"{_APP} bindings",
    "payapp unbind": f"{_APP} unbind BINDING_ID",
    "payapp sms": f"{_APP} sms +4915100000001",
}
