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
_BANK = "atm bank enterprise --ca var/pki/ca.pem"
EXAMPLES = {
    "bank": f"{_BANK} login ACME-TRUST jan beneficiary custody",
    "bank enterprise": f"{_BANK} login ACME-TRUST jan beneficiary custody\n{_BANK} session",
    "bank enterprise login": f"{_BANK} login ACME-TRUST jan beneficiary custody",
    "bank enterprise session": f"{_BANK} session",
    "bank enterprise logout": f"{_BANK} logout",
    "bank enterprise balance": f"{_BANK} balance 2000000004",
    "bank enterprise statement": f"{_BANK} statement 2000000001",
    "bank enterprise transfer": f"{_BANK} transfer 2000000001 2000000002 10000",
    "bank enterprise payout": f"{_BANK} payout 2000000001 DE0012345678 50000",
    "bank enterprise approve": f"{_BANK} approve PAYOUT_ID",
    "bank enterprise admin-login": f"{_BANK} admin-login admin-ana",
    "bank enterprise table": f"{_BANK} table ACME-TRUST",
    "bank enterprise changes": f"{_BANK} changes ACME-TRUST",
    "bank enterprise propose": (
        f"{_BANK} propose ACME-TRUST beneficiary custody"
        " --operations balance,statement --accounts 2000000004"
    ),
    "bank enterprise approve-change": f"{_BANK} approve-change CHANGE_ID",
    "bank enterprise reject-change": f"{_BANK} reject-change CHANGE_ID",
}


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
    login.add_argument("company", help="the company's online banking account, e.g. ACME-TRUST")
    login.add_argument("user", help="your user id in that company")
    login.add_argument("role", help="the role you act in, e.g. trustee")
    login.add_argument("department", help="the department you act for, e.g. custody")
    steps.add_parser("session", help="the session's operations and fund accounts ($ATM_BANK_TOKEN)")
    steps.add_parser("logout", help="end the session")
    for name in ("balance", "statement"):
        steps.add_parser(name, help=f"a fund account's {name}").add_argument(
            "account", help="a fund account the session lists"
        )
    transfer = steps.add_parser("transfer", help="between two bound fund accounts")
    transfer.add_argument("source", help="the fund account to debit")
    transfer.add_argument("target", help="the fund account to credit")
    transfer.add_argument("amount", type=int, help="minor units")
    payout = steps.add_parser("payout", help="to an external account (held until approved)")
    payout.add_argument("account", help="the fund account to pay from")
    payout.add_argument("beneficiary", help="the external account to pay to")
    payout.add_argument("amount", type=int, help="minor units")
    steps.add_parser("approve", help="approve another user's payout").add_argument(
        "payout_id", help="the id the payout step printed"
    )
    steps.add_parser("admin-login", help="log in as a bank administrator").add_argument(
        "admin", help="the administrator's id"
    )
    for name, text in (("table", "permission table"), ("changes", "table changes")):
        steps.add_parser(name, help=f"a company's {text} (admin)").add_argument(
            "company", help="the company's online banking account"
        )
    propose = steps.add_parser("propose", help="propose a table entry (admin; maker)")
    propose.add_argument("company", help="the company's online banking account")
    propose.add_argument("role", help="the role of the table entry")
    propose.add_argument("department", help="the department of the table entry")
    propose.add_argument("--operations", default="", help="comma-separated; empty removes")
    propose.add_argument("--accounts", default="", help="comma-separated fund accounts")
    for name, text in (("approve-change", "apply"), ("reject-change", "reject")):
        steps.add_parser(name, help=f"{text} another admin's change (checker)").add_argument(
            "change_id", help="the id the propose step printed"
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
