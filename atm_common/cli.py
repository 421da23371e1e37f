"""Command-line plumbing every entry point shares (``atm`` and ``python -m sim``).

Each package registers its own subcommands on an :mod:`argparse` subparser; this module
only makes everything the process writes private, sets up logging and turns the errors a
user can cause into one line on stderr and an exit code of its class
(:class:`atm_common.errors.ExitCode`, the table in docs/cli.md), so no entry point ever
shows a traceback for them. :func:`polish` gives every command of a parser the same help:
defaults shown, the examples kept as written.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from atm_common.errors import AtmError, ExitCode
from atm_common.files import PRIVATE_UMASK, private_file

LOG_LEVELS = ("debug", "info", "warning", "error")
DISTRIBUTION = "atm-runtime"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; descriptions and epilogs (examples) as written.

    A flag (default False) or an option without a default says nothing about it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="how much to log to stderr"
    )


def add_version_option(parser: argparse.ArgumentParser) -> None:
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version}", help="print the version"
    )


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command under ``parser`` (depth first), with its full name (``diag pinpad``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, child in action.choices.items():
                if id(child) in seen:  # an alias
                    continue
                seen.add(id(child))
                yield name, child
                for sub, grandchild in subparsers(child):
                    yield f"{name} {sub}", grandchild


def polish(parser: argparse.ArgumentParser, examples: Mapping[str, str]) -> None:
    """The same help on every command: defaults shown, ``examples[name]`` as the epilog.

    A command that already has an epilog keeps it and gets the examples after it.
    """
    parser.formatter_class = HelpFormatter
    if "" in examples:
        parser.epilog = _with_examples(parser.epilog, examples[""])
    for name, child in subparsers(parser):
        child.formatter_class = HelpFormatter
        if name in examples:
            child.epilog = _with_examples(child.epilog, examples[name])


def _with_examples(epilog: str | None, examples: str) -> str:
    text = "examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines())
    return f"{epilog.rstrip()}\n\n{text}" if epilog else text


def positive_int(text: str) -> int:
    """An argparse type: a whole number, 1 or more (``--transactions -5`` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: a port is 0-65535")
    return value


def fraction(text: str) -> float:
    """An argparse type: a share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value}: must be between 0 and 1")
    return value


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


def describe_os_error(exc: OSError) -> tuple[str, ExitCode]:
    """One line for an operating-system refusal a user caused, and its exit class.

    A port in use is the host class (another process serves it); a file or folder that
    cannot be used is the config class (a path given on the command line or in a config).
    """
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc)
    text = re.sub(r"^\[Errno \d+\] ", "", str(exc))
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{text}: another process is listening there; stop it or choose another port"
            " (0 picks a free one)",
            ExitCode.HOST,
        )
    if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{text}: is the service running, at that address?", ExitCode.HOST
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{text}: not an address of this machine", ExitCode.HOST
    hints = {
        errno.EISDIR: "is a folder; give a file",
        errno.ENOTDIR: "a part of this path is not a folder",
        errno.ENOENT: "does not exist; create its folder first or give another path",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "is on a read-only file system",
    }
    hint = hints.get(exc.errno or 0, reason)
    return (f"{where}: {hint}" if where else f"{reason}"), ExitCode.CONFIG


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, set up logging, run the chosen command's ``func``; its exit code.

    The umask goes first, before anything is written: every file and directory any
    command creates (databases and their -wal/-shm, journals, the SAF queue, logs,
    snapshots, generated seeds and configs, the demo's and the soak's work dirs) and every
    service process it starts (they inherit it) is then private to the owner, whichever
    code path creates it. A refusal prints ``PROG: error: WHAT`` and exits with its class;
    a programming bug still shows its traceback (it must be fixed, not hidden).
    """
    os.umask(PRIVATE_UMASK)
    args = parser.parse_args(argv)  # exits 2 (ExitCode.USAGE) on a bad command line
    try:
        setup_logging(args.log_level, getattr(args, "log", None))
        return int(args.func(args))
    except AtmError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except OSError as exc:
        message, code = describe_os_error(exc)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return int(code)
