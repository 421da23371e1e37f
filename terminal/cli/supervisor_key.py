"""``atm supervisor-key``: the ``[supervisor.keys]`` line for a new supervisor key.

Why a command: the config holds a salted scrypt hash of each role's key
(:mod:`atm_common.keyhash`), which nobody should assemble by hand. The key is read
without echo from the terminal (twice, so a typo does not lock the role out), or one
line per role from stdin when that is not a terminal (a script, a vault's pipe); never
from the command line, where ``ps`` and the shell history would keep it. Only the hash
is printed; the key goes nowhere else.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from atm_common.errors import UsageError
from atm_common.keyhash import hash_key

ROLES = ("replenisher", "technician")  # terminal/supervisor/roles.py FUNCTIONS
MIN_KEY_DIGITS = 6  # a million keys at least; the hash makes each guess cost ~90 ms
MAX_KEY_DIGITS = 16  # the PIN pad's key entry: terminal/supervisor/keyentry.py KEY_DIGITS

EXAMPLES = {
    "supervisor-key": """\
atm supervisor-key --role replenisher                       # type the key twice, not shown
atm supervisor-key --role replenisher --role technician     # one key per role
atm supervisor-key --role technician < tech-key.txt          # the key on stdin (a 0600 file)""",
}


def check_key(role: str, key: str) -> str:
    """The key as the PIN pad takes it: digits only, 6-16 of them (never echoed back)."""
    if not key:
        raise UsageError(f"no supervisor key given for {role}")
    if not (key.isascii() and key.isdigit()):
        raise UsageError(
            f"the supervisor key for {role} must be digits only (0-9), as typed on the PIN pad"
        )
    if not MIN_KEY_DIGITS <= len(key) <= MAX_KEY_DIGITS:
        raise UsageError(
            f"the supervisor key for {role} must have {MIN_KEY_DIGITS}-{MAX_KEY_DIGITS}"
            f" digits, got {len(key)}"
        )
    return key


def _typed(role: str) -> str:
    """From the terminal, without echo, twice."""
    try:
        key = getpass.getpass(f"supervisor key for {role} (digits, not shown): ").strip()
        check_key(role, key)
        again = getpass.getpass(f"the same key again for {role}: ").strip()
    except EOFError:
        raise UsageError(f"no supervisor key given for {role}") from None
    if again != key:
        raise UsageError(f"the two supervisor keys typed for {role} differ; nothing written")
    return key


def _piped(role: str) -> str:
    """One line of stdin (a script or a vault's pipe: no prompt, no echo to undo)."""
    line = sys.stdin.readline()
    if not line:
        raise UsageError(f"no supervisor key for {role} on stdin (one line per --role)")
    return check_key(role, line.strip())


def cmd_supervisor_key(args: argparse.Namespace) -> int:
    roles: list[str] = args.role
    if len(set(roles)) != len(roles):
        raise UsageError("--role: name each role once")
    read = _typed if sys.stdin.isatty() else _piped
    keys = [read(role) for role in roles]  # all read and checked before anything is printed
    if len(set(keys)) != len(keys):
        raise UsageError("each role needs its own supervisor key; two of them are the same")
    for role, key in zip(roles, keys, strict=True):
        print(f'{role} = "{hash_key(key)}"')
    return 0


def register(sub: Any) -> None:
    """Add ``atm supervisor-key`` to the ``atm`` subparsers ``sub``."""
    command = sub.add_parser(
        "supervisor-key",
        help="hash a new supervisor key for [supervisor.keys] (read without echo or from stdin)",
        description="Reads a supervisor key (6-16 digits, as typed on the PIN pad) without"
        " echo, or one line per --role from stdin when it is not a terminal, and prints"
        ' `role = "scrypt$..."` lines to paste under [supervisor.keys]'
        " (docs/supervisor.md). The key is never an argument and never printed.",
    )
    command.add_argument(
        "--role",
        action="append",
        required=True,
        choices=ROLES,
        help="the role this key opens; repeat for several roles (one key each, in this order)",
    )
    command.set_defaults(func=cmd_supervisor_key)
