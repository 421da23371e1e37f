"""``atm phone joint-...``: a co-owner's bank app at a shell (docs/joint-accounts.md).

The app's bearer token is read from a 0600 file (``--token-file``), never from the
command line, where any user's ``ps`` would show it; so is a candidate's personal code.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from atm_common.errors import ConfigError

STEPS = ("joint-approvals", "joint-decide", "joint-bind", "joint-messages")
_APP = "atm phone --ca var/pki/ca.pem"
EXAMPLES = {
    "phone joint-approvals": f"{_APP} joint-approvals --token-file hugo.token",
    "phone joint-messages": f"{_APP} joint-messages --token-file hugo.token",
    "phone joint-decide": f"{_APP} joint-decide --token-file hugo.token APPROVAL_ID approve",
    "phone joint-bind": (
        f"{_APP} joint-bind --token-file gina.token 1000000008 jon ID-DE-0014 --code-file jon.code"
    ),
}


def add_joint_steps(steps: Any) -> None:
    """The joint-account subcommands, on ``atm phone``'s subparsers."""

    def step(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = steps.add_parser(name, help=text)
        parser.add_argument(
            "--token-file", required=True, help="0600 file: the co-owner's app token"
        )
        return parser

    step("joint-approvals", "joint account: requests waiting for my decision")
    step("joint-messages", "joint account: approval requests, outcomes, locks and bills")
    decide = step("joint-decide", "joint account: approve or reject a request")
    decide.add_argument("approval_id", help="the id joint-approvals listed")
    decide.add_argument("decision", choices=("approve", "reject"), help="approve or reject")
    bind = step("joint-bind", "joint account: ask to bind a new co-owner (all must authorise)")
    bind.add_argument("account", help="the joint account's number")
    bind.add_argument("candidate", help="the new co-owner's bank id")
    bind.add_argument("identity", help="their identity document number")
    bind.add_argument("--code-file", required=True, help="0600 file: their personal code")


def read_secret(path: str, what: str) -> str:
    """A one-line secret from a file only its owner can read."""
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read the {what}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(path, "", f"the {what} is open to others; chmod 600 it")
    if not text:
        raise ConfigError(path, "", f"the {what} is empty")
    return text


def joint_step(args: argparse.Namespace) -> Any:
    from sim.phone.joint import JointApp

    token = read_secret(args.token_file, "token file")
    with JointApp(args.url, token, ca=args.ca) as app:
        if args.step == "joint-approvals":
            return app.pending()
        if args.step == "joint-messages":
            return app.messages()
        if args.step == "joint-decide":
            return app.decide(args.approval_id, args.decision == "approve")
        code = read_secret(args.code_file, "code file")
        return app.bind(args.account, args.candidate, args.identity, code)
