"""Command-line plumbing every entry point shares (``atm`` and ``python -m sim``).

Each package registers its own subcommands on an :mod:`argparse` subparser; this module
only sets up logging and turns the errors a user can cause into one line on stderr and an
exit code, so no entry point ever shows a traceback for them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from atm_common.errors import AtmError

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="default: %(default)s"
    )


def setup_logging(level: str, log_file: str | None = None) -> None:
    """Log to stderr, or to ``log_file`` (created private to its owner)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_file)]
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=handlers,
    )


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, set up logging, run the chosen command's ``func``; its exit code."""
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
