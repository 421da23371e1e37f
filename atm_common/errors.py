"""The root of the one exception tree, and the categories that cut across packages.

Every error this project raises on purpose is an :class:`AtmError`, so a caller (the
``atm`` command above all) can tell "our code refused this input" from a programming bug.
Each package keeps its own leaves next to its code, as python-can does with its backends:
``host_link.errors`` (codec, framing, link), ``terminal.errors`` (devices, state machine,
journal), ``sim.host.errors`` (ledger). Each class says *what* was wrong in its message;
structured attributes (device, code, field, position, key) let callers react without
parsing text.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """What an ``atm`` command's exit status says (docs/cli.md has the table).

    One class per kind of thing a user must fix, so a script can tell "fix the command
    line" from "fix the config" from "the device is gone" from "the host is not there"
    without reading the message.
    """

    OK = 0
    CHECK_FAILED = 1  # the command ran and found a problem (a device not ok, a mismatch)
    USAGE = 2  # the command line: an unknown option, a bad value (argparse's own code)
    CONFIG = 3  # a config, seed, key or output file or folder cannot be used
    DEVICE = 4  # a device cannot be reached or refused
    HOST = 5  # a network peer or port: host unreachable, port in use, ledger in use
    DATA = 6  # data refused: a malformed message, a wrong check value, a bad record
    INTERRUPTED = 130  # Ctrl-C


class AtmError(Exception):
    """Root of every error this project raises deliberately.

    ``exit_code`` is the class of the error for the ``atm`` command; each category below
    (and each package's leaves, where they are a different class) sets its own.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.DATA


class UsageError(AtmError):
    """The command line asks for something that cannot be done as given."""

    exit_code = ExitCode.USAGE


class ServiceUnavailable(AtmError):
    """A network peer or a shared resource the command needs is not there or is taken:
    a port in use, a host that does not answer, a ledger another process serves."""

    exit_code = ExitCode.HOST


class ConfigError(AtmError):
    """A configuration or seed file is unreadable or has a bad value.

    The message names the file and the dotted key, e.g. ``kiosk.toml: devices.dispenser.backend``.
    """

    exit_code = ExitCode.CONFIG

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class ProtocolError(AtmError):
    """A message or frame broke its protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class SecurityError(AtmError):
    """A key, PIN block or MAC problem. Messages never include key or PIN material."""


class KeyUnavailable(SecurityError):
    """No usable key (unknown terminal, no key exchange yet, a KSN for another key)."""
