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

if TYPE_CHECKING:
    from sim.phone.client import PhoneClient

DEFAULT_URL = "https://127.0.0.1:8584"


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
    verify.add_argument("request_id")
    verify.add_argument("code")
    face = steps.add_parser("face", help="consent and send a photo for the face check")
    face.add_argument("request_id")
    face.add_argument("image", help="JPEG or PNG file")
    face.add_argument("--no-consent", action="store_true", help="refuse consent (to see 422)")
    accounts = steps.add_parser("accounts", help="list the accounts to withdraw from")
    accounts.add_argument("request_id")
    quote = steps.add_parser("quote", help="price a withdrawal (fee by card product)")
    quote.add_argument("request_id")
    quote.add_argument("account")
    quote.add_argument("amount", type=int, help="minor units")
    quote.add_argument("method", choices=("code", "face", "both"))
    confirm = steps.add_parser("confirm", help="accept a quote: hold and reserve")
    confirm.add_argument("request_id")
    confirm.add_argument("quote_id")
    for name, text in (
        ("status", "show a reservation"),
        ("cancel", "cancel a reservation (releases the hold)"),
        ("events", "the bank's journal of a reservation"),
    ):
        step = steps.add_parser(name, help=text)
        step.add_argument("reservation_id")
    from sim.phone.binding import add_steps as add_binding_steps

    add_binding_steps(steps)  # payment-app binding: sim/phone/binding.py
    route = steps.add_parser("route", help="ATMs that can pay an amount, soonest first")
    route.add_argument("lat", type=float)
    route.add_argument("lon", type=float)
    route.add_argument("amount", type=int, help="minor units")


def run(args: argparse.Namespace) -> int:
    """Run one step and print its result as JSON; errors go to stderr (exit 1)."""
    if args.step in ("request", "messages") and not args.phone:
        print("atm phone: --phone is required for this step", file=sys.stderr)
        return 2
    from sim.phone.client import PhoneApiError, PhoneClient

    with PhoneClient(args.url, args.phone, ca=args.ca) as phone:
        try:
            result = _step(phone, args)
        except PhoneApiError as exc:
            print(f"atm phone: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2))
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
    if step == "confirm":
        return phone.confirm(args.quote_id, args.request_id)
    if step == "status":
        return phone.status(args.reservation_id)
    if step == "cancel":
        return phone.cancel(args.reservation_id)
    if step == "events":
        return phone.events(args.reservation_id)
    return phone.route(args.lat, args.lon, args.amount)


def main(argv: Sequence[str] | None = None) -> int:
    """``atm phone ...`` on its own (``python -m sim.phone ...``)."""
    parser = argparse.ArgumentParser(
        prog="atm phone",
        description="The customer's phone: cardless withdrawal (atm host --api-port).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
