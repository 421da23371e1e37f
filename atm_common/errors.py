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


class AtmError(Exception):
    """Root of every error this project raises deliberately."""


class ConfigError(AtmError):
    """A configuration or seed file is unreadable or has a bad value.

    The message names the file and the dotted key, e.g. ``kiosk.toml: devices.dispenser.backend``.
    """

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
