"""The kiosk's commands: the terminal loop, diagnostics, the journal, the state diagram.

Registered on the ``atm`` command by :mod:`atm.cli`; nothing here knows the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from terminal.cli.diag import DEFAULT_CONFIG, add_diag_parser


def cmd_journal(args: argparse.Namespace) -> int:
    from terminal.journal import read_tail

    for entry in read_tail(Path(args.journal), args.lines):
        print(json.dumps(dataclasses_asdict(entry)) if args.json else entry.line())
    return 0


def dataclasses_asdict(entry: object) -> dict[str, object]:
    import dataclasses

    assert dataclasses.is_dataclass(entry) and not isinstance(entry, type)
    return dataclasses.asdict(entry)


def cmd_fsm(args: argparse.Namespace) -> int:
    from terminal.fsm.diagram import write_diagram

    for path in write_diagram(Path(args.diagram)):
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from terminal.cli.interactive import run_interactive

    return asyncio.run(run_interactive(Path(args.config), sim=args.sim))


def register(sub: Any) -> None:
    """Add the kiosk's subcommands to the ``atm`` subparsers ``sub``."""
    run = sub.add_parser("run", help="run the terminal loop")
    run.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="the terminal's TOML config (default: simulated devices)",
    )
    run.add_argument("--sim", action="store_true", help="customer actions typed at a prompt")
    run.set_defaults(func=cmd_run)

    journal = sub.add_parser("journal", help="electronic journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    tail = jsub.add_parser("tail", help="show the last entries")
    tail.add_argument("--journal", default="var/journal.db")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_journal)

    add_diag_parser(sub)

    fsm = sub.add_parser("fsm", help="state machine tools")
    fsm.add_argument(
        "--diagram", required=True, help="output path (.md/.mmd; .svg/.png need graphviz)"
    )
    fsm.set_defaults(func=cmd_fsm)
