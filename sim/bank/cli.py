"""``atm bank enterprise ...``: enterprise online banking at a shell, printing JSON.

Passwords are read from the environment (``ATM_BANK_PASSWORD``) or a prompt, and the
session token from ``ATM_BANK_TOKEN``, never from the command line (which every user
of the machine can read in the process list) and never written to a file. ``login``
and ``admin-login`` print the token once, in their JSON answer.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.bank.client import EnterpriseClient

DEFAULT_URL = "https://127.0.0.1:8584"
TOKEN_ENV, PASSWORD_ENV = "ATM_BANK_TOKEN", "ATM_BANK_PASSWORD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``atm bank`` and its ``enterprise`` subcommands."""
    channels = parser.add_subparsers(dest="channel", required=True)
    ent = channels.add_parser("enterprise", help="enterprise online banking by role")
    ent.add_argument("--url", default=DEFAULT_URL, help="the host's API (atm host --api-port)")
    ent.add_argument("--ca", help="the bank's CA certificate (ca.pem of atm pki init)")
    steps = ent.add_subparsers(dest="step", required=True)
    login = steps.add_parser(
        "login", help="log in as a role in a department (password: env/prompt)"
    )
    for name in ("company", "user", "role", "department"):
        login.add_argument(name)
    steps.add_parser("session", help="the session's operations and fund accounts ($ATM_BANK_TOKEN)")
    steps.add_parser("logout", help="end the session")
    for name in ("balance", "statement"):
        steps.add_parser(name, help=f"a fund account's {name}").add_argument("account")
    transfer = steps.add_parser("transfer", help="between two bound fund accounts")
    transfer.add_argument("source")
    transfer.add_argument("target")
    transfer.add_argument("amount", type=int, help="minor units")
    payout = steps.add_parser("payout", help="to an external account (held until approved)")
    payout.add_argument("account")
    payout.add_argument("beneficiary")
    payout.add_argument("amount", type=int, help="minor units")
    steps.add_parser("approve", help="approve another user's payout").add_argument("payout_id")
    steps.add_parser("admin-login", help="log in as a bank administrator").add_argument("admin")
    steps.add_parser("table", help="a company's permission table (admin)").add_argument("company")
    steps.add_parser("changes", help="a company's table changes (admin)").add_argument("company")
    propose = steps.add_parser("propose", help="propose a table entry (admin; maker)")
    propose.add_argument("company")
    propose.add_argument("role")
    propose.add_argument("department")
    propose.add_argument("--operations", default="", help="comma-separated; empty removes")
    propose.add_argument("--accounts", default="", help="comma-separated fund accounts")
    for name, text in (("approve-change", "apply"), ("reject-change", "reject")):
        steps.add_parser(name, help=f"{text} another admin's change (checker)").add_argument(
            "change_id"
        )


def _password() -> str:
    return os.environ.get(PASSWORD_ENV) or getpass.getpass("password: ")


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _step(client: EnterpriseClient, args: argparse.Namespace) -> Any:
    step = args.step
    if step == "login":
        return client.login(args.company, args.user, _password(), args.role, args.department)
    if step == "admin-login":
        return client.admin_login(args.admin, _password())
    calls: dict[str, Any] = {
        "session": lambda: client.session(),
        "logout": lambda: client.logout(),
        "balance": lambda: client.balance(args.account),
        "statement": lambda: client.statement(args.account),
        "transfer": lambda: client.transfer(args.source, args.target, args.amount),
        "payout": lambda: client.payout(args.account, args.beneficiary, args.amount),
        "approve": lambda: client.approve(args.payout_id),
        "table": lambda: client.table(args.company),
        "changes": lambda: client.changes(args.company),
        "propose": lambda: client.propose(
            args.company, args.role, args.department, _items(args.operations), _items(args.accounts)
        ),
        "approve-change": lambda: client.decide(args.change_id, True),
        "reject-change": lambda: client.decide(args.change_id, False),
    }
    return calls[step]()


def run(args: argparse.Namespace) -> int:
    """One step; its result as JSON on stdout, a refusal as one line on stderr (exit 1)."""
    from sim.bank.client import BankApiError, EnterpriseClient

    token = os.environ.get(TOKEN_ENV) or None
    with EnterpriseClient(args.url, token=token, ca=args.ca) as client:
        try:
            result = _step(client, args)
        except BankApiError as exc:
            print(f"atm bank enterprise: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.bank ...``."""
    parser = argparse.ArgumentParser(prog="atm bank", description="Online banking clients.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
