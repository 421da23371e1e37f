"""The ``atm`` command: the kiosk's commands and the simulator's, on one parser.

The composition root of the repository (see docs/architecture.md): it is the one module
that knows both the terminal and the simulator. Each of them registers its own
subcommands; every command prints its results here at the edge, while the code below
logs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import sim.cli
import terminal.cli
from atm_common import cli

EXAMPLES = """\
atm pki init var/pki && atm host --demo --tls-dir var/pki
atm run --sim
atm diag status --json
atm demo
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atm",
        description="ATM/POS terminal runtime and simulator: the terminal loop, field"
        " diagnostics, the bank host and its services, the demo and the soak."
        " `atm COMMAND --help` shows each command's options and examples;"
        " docs/cli.md has the exit codes.",
    )
    cli.add_version_option(parser)
    cli.add_logging_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    terminal.cli.register(sub)
    sim.cli.register(sub)
    cli.polish(parser, {"": EXAMPLES, **terminal.cli.EXAMPLES, **sim.cli.EXAMPLES})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)
