"""The kiosk's commands: the terminal loop, diagnostics, the journal, the state diagram.

Registered on the ``atm`` command by :mod:`atm.cli`; nothing here knows the simulator.
The journal and the SAF queue are found through the terminal's config (``--config``, the
same default as ``atm run``), so they are read where the terminal writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from atm_common.errors import UsageError
from terminal.cli import supervisor_key
from terminal.cli.diag import DEFAULT_CONFIG, DIAG_EXAMPLES, add_diag_parser, journal_path

DIAGRAM_SUFFIXES = (".md", ".mmd", ".svg", ".png")

EXAMPLES = {
    "run": """\
atm run --sim                                  # simulated devices, customer at a prompt
atm run --sim --host 127.0.0.1 --port 8583     # another host than the config's
atm run --config kiosk.toml                    # the unattended kiosk (atm sim devices)""",
    "journal": "atm journal tail -n 50",
    "journal tail": """\
atm journal tail                     # the journal of the default config's terminal
atm journal tail --config kiosk.toml -n 50 --json""",
    "journal search": """\
atm journal search --card 4761739001010010 --since 2026-12-07T09:00
atm journal search --event 'supervisor_*' --json""",
    "fsm": """\
atm fsm --diagram docs/states.md     # Mermaid in a Markdown fence
atm fsm --diagram states.svg         # also needs graphviz""",
    **DIAG_EXAMPLES,
    **supervisor_key.EXAMPLES,
}


def cmd_journal(args: argparse.Namespace) -> int:
    from terminal.journal import read_tail

    if args.lines < 1:
        raise UsageError(f"--lines {args.lines}: give a number of entries, 1 or more")
    for entry in read_tail(journal_path(args), args.lines):
        print(json.dumps(dataclasses_asdict(entry)) if args.json else entry.line())
    return 0


def cmd_journal_search(args: argparse.Namespace) -> int:
    from terminal.supervisor.journal_search import search

    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a number of entries, 1 or more")
    found = search(
        journal_path(args), session=args.session, card=args.card, since=args.since,
        until=args.until, event=args.event, limit=args.limit,
    )  # fmt: skip
    for entry in found:
        print(json.dumps(dataclasses_asdict(entry)) if args.json else entry.line())
    return 0


def dataclasses_asdict(entry: object) -> dict[str, object]:
    import dataclasses

    assert dataclasses.is_dataclass(entry) and not isinstance(entry, type)
    return dataclasses.asdict(entry)


def cmd_fsm(args: argparse.Namespace) -> int:
    from terminal.fsm.diagram import write_diagram

    path = Path(args.diagram)
    if path.suffix.lower() not in DIAGRAM_SUFFIXES:
        raise UsageError(
            f"--diagram {args.diagram}: name a .md, .mmd, .svg or .png file"
            " (the suffix chooses the format)"
        )
    for written in write_diagram(path):
        print(f"wrote {written}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from atm_common.lockfile import exclusive
    from terminal.cli.interactive import run_interactive
    from terminal.config import load_config

    journal = load_config(Path(args.config)).journal
    # one terminal per journal; `atm diag` sees this lock and keeps off its devices
    with exclusive(
        journal, f"a terminal is already running on {journal}; stop it or use another config"
    ):
        return asyncio.run(
            run_interactive(Path(args.config), sim=args.sim, address=args.host, port=args.port)
        )


def register(sub: Any) -> None:
    """Add the kiosk's subcommands to the ``atm`` subparsers ``sub``."""
    run = sub.add_parser("run", help="run the terminal loop")
    run.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the terminal's TOML config (simulated devices)"
    )
    run.add_argument("--sim", action="store_true", help="customer actions typed at a prompt")
    run.add_argument("--host", help="the bank host's address (default: the config's [host])")
    run.add_argument(
        "--port", type=int, help="the bank host's ISO 8583 port (default: the config's [host])"
    )
    run.set_defaults(func=cmd_run)

    journal = sub.add_parser("journal", help="electronic journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    tail = jsub.add_parser("tail", help="show the last entries")
    tail.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the terminal's TOML config: its journal is read"
    )
    tail.add_argument("--journal", help="read this journal file instead of the config's")
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many entries")
    tail.add_argument("--json", action="store_true", help="one JSON object per entry")
    tail.set_defaults(func=cmd_journal)
    search = jsub.add_parser(
        "search", help="entries by session, card (masked), time range and event kind"
    )
    search.add_argument("--config", default=DEFAULT_CONFIG, help="the terminal's TOML config")
    search.add_argument("--journal", help="read this journal file instead of the config's")
    search.add_argument("--session", help="one session id")
    search.add_argument("--card", help="a PAN (masked before the search) or a masked PAN")
    search.add_argument("--since", help="ISO time, inclusive (2026-12-07T09:00)")
    search.add_argument("--until", help="ISO time, inclusive")
    search.add_argument("--event", help="an event kind; a trailing * matches a prefix")
    search.add_argument("-n", "--limit", type=int, default=200, help="at most this many")
    search.add_argument("--json", action="store_true", help="one JSON object per entry")
    search.set_defaults(func=cmd_journal_search)

    add_diag_parser(sub)
    supervisor_key.register(sub)

    fsm = sub.add_parser("fsm", help="state machine tools")
    fsm.add_argument(
        "--diagram", required=True, help="output path (.md/.mmd; .svg/.png need graphviz)"
    )
    fsm.set_defaults(func=cmd_fsm)
