"""Command-line plumbing every entry point shares (``atm`` and ``python -m sim``).

Each package registers its own subcommands on an :mod:`argparse` subparser; this module
only makes everything the process writes private, sets up logging and turns the errors a
user can cause into one line on stderr and an exit code, so no entry point ever shows a
traceback for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from atm_common.errors import AtmError
from atm_common.files import PRIVATE_UMASK, private_file

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="default: %(default)s"
    )


def setup_logging(level: str, log_file: str | None = None) -> None:
    """Log to stderr, or to ``log_file`` (created 0600, in a 0700 directory if it makes
    one: logs hold masked card data, terminal addresses and key check values)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers = [logging.FileHandler(private_file(Path(log_file)))]
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=handlers,
    )


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, set up logging, run the chosen command's ``func``; its exit code.

    The umask goes first, before anything is written: every file and directory any
    command creates (databases and their -wal/-shm, journals, the SAF queue, logs,
    snapshots, generated seeds and configs, the demo's and the soak's work dirs) and every
    service process it starts (they inherit it) is then private to the owner, whichever
    code path creates it.
    """
    os.umask(PRIVATE_UMASK)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, getattr(args, "log", None))
    try:
        return int(args.func(args))
    except AtmError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        return 0
