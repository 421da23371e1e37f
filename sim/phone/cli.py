"""``atm phone ...``: the phone simulator's steps at a shell, printing JSON.

Kept apart from :mod:`sim.phone.client` so building the ``atm`` parser does not import
httpx: the client is imported when a step runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atm_common import cli
from atm_common.errors import ExitCode, ServiceUnavailable, UsageError
from sim.phone.joint_cli import STEPS as JOINT_STEPS
from sim.phone.joint_cli import add_joint_steps, joint_step, read_secret

if TYPE_CHECKING:
    from sim.phone.client import PhoneClient

DEFAULT_URL = "https://127.0.0.1:8584"
REQUEST_ID = "what the request step answered"
PHONE = "atm phone --ca var/pki/ca.pem --phone +4915100000006"
EXAMPLES = {
    "phone request": f"{PHONE} request",
    "phone messages": f"{PHONE} messages",
    "phone verify": f"{PHONE} verify REQUEST_ID 123456",
    "phone face": f"{PHONE} face REQUEST_ID me.jpg",
    "phone accounts": f"{PHONE} accounts REQUEST_ID",
    "phone quote": f"{PHONE} quote REQUEST_ID ACCOUNT 10000 code",
    "phone confirm": f"{PHONE} confirm REQUEST_ID QUOTE_ID\n{PHONE} confirm REQUEST_ID"
    " QUOTE_ID --joint --password-file pw.txt --code-file code.txt",
    "phone joint-reservation": f"{PHONE} joint-reservation REQUEST_ID",
    "phone status": f"{PHONE} status RESERVATION_ID",
    "phone cancel": f"{PHONE} cancel RESERVATION_ID",
    "phone events": f"{PHONE} events RESERVATION_ID",
    "phone route": f"{PHONE} route 52.52 13.405 10000",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``atm phone`` options and subcommands (shared by :func:`main` and the atm CLI)."""
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="the host's API (atm host --api-port); http:// for a host started with --plain",
    )
    parser.add_argument(
        "--ca",
        help="the bank's CA certificate (ca.pem of atm pki init) to verify an https API by;"
        " without it only the system's CAs are trusted",
    )
    parser.add_argument("--phone", default="", help="the phone number, e.g. +4915100000006")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("request", help="ask for a cardless withdrawal (the bank texts a code)")
    steps.add_parser("messages", help="show this phone's SMS (atm host --sms-inbox)")
    verify = steps.add_parser("verify", help="send the SMS code")
    verify.add_argument("request_id", help=REQUEST_ID)
    verify.add_argument("code", help="the code the bank texted")
    face = steps.add_parser("face", help="consent and send a photo for the face check")
    face.add_argument("request_id", help=REQUEST_ID)
    face.add_argument("image", help="JPEG or PNG file")
    face.add_argument("--no-consent", action="store_true", help="refuse consent (to see 422)")
    accounts = steps.add_parser("accounts", help="list the accounts to withdraw from")
    accounts.add_argument("request_id", help=REQUEST_ID)
    quote = steps.add_parser("quote", help="price a withdrawal (fee by card product)")
    quote.add_argument("request_id", help=REQUEST_ID)
    quote.add_argument("account", help="an account id from the accounts step")
    quote.add_argument("amount", type=int, help="minor units")
    quote.add_argument(
        "method", choices=("code", "face", "both"), help="what the customer shows at the ATM"
    )
    confirm = steps.add_parser("confirm", help="accept a quote: hold and reserve")
    confirm.add_argument("request_id", help=REQUEST_ID)
    confirm.add_argument("quote_id", help="what the quote step answered")
    confirm.add_argument(
        "--joint",
        action="store_true",
        help="a joint account: prove it with its password and your own code; another"
        " co-owner must approve before anything is held",
    )
    confirm.add_argument(
        "--password-file", help="--joint: 0600 file with the account's password (else a prompt)"
    )
    confirm.add_argument(
        "--code-file", help="--joint: 0600 file with your own code (else a prompt)"
    )
    pending = steps.add_parser(
        "joint-reservation", help="a joint account's reservation: awaiting approval or frozen"
    )
    pending.add_argument("request_id", help=REQUEST_ID)
    for name, text in (
        ("status", "show a reservation"),
        ("cancel", "cancel a reservation (releases the hold)"),
        ("events", "the bank's journal of a reservation"),
    ):
        step = steps.add_parser(name, help=text)
        step.add_argument("reservation_id", help="what the confirm step answered")
    from sim.phone.binding import add_steps as add_binding_steps

    add_binding_steps(steps)  # payment-app binding: sim/phone/binding.py
    route = steps.add_parser("route", help="ATMs that can pay an amount, soonest first")
    route.add_argument("lat", type=float, help="where the customer is: latitude")
    route.add_argument("lon", type=float, help="longitude")
    route.add_argument("amount", type=int, help="minor units")
    add_joint_steps(steps)  # a co-owner's app: sim/phone/joint_cli.py


def run(args: argparse.Namespace) -> int:
    """Run one step and print its answer as JSON on stdout; its exit code.

    0 when the bank did what was asked; 1 (:attr:`ExitCode.CHECK_FAILED`) when it said
    no, whether by refusing (a wrong code: 403) or by answering "no" (a face that does
    not match): the answer, or ``{"status", "error"}``, is printed either way, the
    refusal also as one line on stderr; 5 (:attr:`ExitCode.HOST`) when the bank could
    not be reached or failed (5xx); 2 for a step given without what it needs.
    """
    if args.step in ("request", "messages") and not args.phone:
        raise UsageError("--phone is required for this step")
    from sim.phone.client import PhoneApiError, PhoneClient

    if args.step in JOINT_STEPS:
        try:
            result = joint_step(args)
        except PhoneApiError as exc:
            print(f"atm phone: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2))
        return 0
    with PhoneClient(args.url, args.phone, ca=args.ca) as phone:
        try:
            result = _step(phone, args)
        except PhoneApiError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise ServiceUnavailable(str(exc)) from None
            print(json.dumps({"status": exc.status, "error": exc.detail}, indent=2))
            print(f"atm phone: refused: {exc}", file=sys.stderr)
            return int(ExitCode.CHECK_FAILED)
    print(json.dumps(result, indent=2))
    if isinstance(result, dict) and result.get("match") is False:
        return int(ExitCode.CHECK_FAILED)  # the face does not match: the bank said no
    return 0


def _step(phone: PhoneClient, args: argparse.Namespace) -> Any:
    step = args.step
    from sim.phone import binding

    if step in binding.STEPS:
        return binding.step(phone, args)
    if step == "request":
        return phone.request()
    if step == "messages":
        return phone.messages()
    if step == "verify":
        return phone.verify(args.code, args.request_id)
    if step == "face":
        return phone.capture_face(
            args.image, consent=not args.no_consent, request_id=args.request_id
        )
    if step == "accounts":
        return phone.accounts(args.request_id)
    if step == "quote":
        return phone.quote(args.account, args.amount, args.method, args.request_id)
    if step == "confirm" and args.joint:
        password = _secret(args.password_file, "the account's password")
        code = _secret(args.code_file, "your own code")
        return phone.joint_confirm(args.quote_id, password, code, args.request_id)
    if step == "confirm":
        return phone.confirm(args.quote_id, args.request_id)
    if step == "joint-reservation":
        return phone.joint_reservation(args.request_id)
    if step == "status":
        return phone.status(args.reservation_id)
    if step == "cancel":
        return phone.cancel(args.reservation_id)
    if step == "events":
        return phone.events(args.reservation_id)
    return phone.route(args.lat, args.lon, args.amount)


def _secret(path: str | None, what: str) -> str:
    """From a 0600 file, or typed at a prompt (never echoed, never on the command line)."""
    if path:
        return read_secret(path, what)
    import getpass

    try:
        text = getpass.getpass(f"{what}: ").strip()
    except EOFError:
        text = ""
    if not text:
        raise UsageError(f"{what} is required: give a 0600 file or type it at the prompt")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``atm phone ...`` on its own (``python -m sim.phone ...``)."""
    parser = argparse.ArgumentParser(
        prog="atm phone",
        formatter_class=cli.HelpFormatter,
        description="The customer's phone: cardless withdrawal (atm host --api-port).",
    )
    cli.add_logging_options(parser)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return cli.run(parser, argv)
