"""The one exception tree of the project.

Every error the terminal, the host link, the devices or the simulators raise on purpose
is a :class:`TerminalError`, so a caller can tell "our code refused this input" from a
programming bug. Each class says *what* was wrong in its message; the structured
attributes (device, code, field, position, key) let callers react without parsing text.
"""

from __future__ import annotations


class TerminalError(Exception):
    """Root of every error this project raises deliberately."""


class ConfigError(TerminalError):
    """A configuration or seed file is unreadable or has a bad value.

    The message names the file and the dotted key, e.g. ``kiosk.toml: devices.dispenser.backend``.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class DeviceError(TerminalError):
    """A device failed. ``device`` names it (``dispenser``, ``pinpad`` ...)."""

    def __init__(self, device: str, message: str, code: int | None = None) -> None:
        self.device = device
        self.code = code
        detail = f" (device code 0x{code:02X})" if code is not None else ""
        super().__init__(f"{device}: {message}{detail}")


class DeviceTimeout(DeviceError):
    """The device, or the customer in front of it, did not answer in time."""


class DeviceFault(DeviceError):
    """The device reported a fault; ``code`` is the device's own error code."""


class DeviceUnavailable(DeviceError):
    """The device is absent, closed or out of service."""


class ProtocolError(TerminalError):
    """A message or frame broke its protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class CodecError(RemoteProtocolError):
    """An ISO 8583 message could not be encoded or decoded.

    ``field`` is the field number (``"t"`` for the MTI, ``"p"`` for the bitmap) and
    ``position`` the byte offset where decoding stopped, when known.
    """

    def __init__(self, message: str, field: str | None = None, position: int | None = None) -> None:
        self.field = field
        self.position = position
        where = ""
        if field is not None:
            where += f" field {field}"
        if position is not None:
            where += f" at byte {position}"
        super().__init__(f"{message}{' (' + where.strip() + ')' if where else ''}")


class FramingError(RemoteProtocolError):
    """A length-prefixed frame was malformed, truncated or too large."""


class HostLinkError(TerminalError):
    """The link to the bank host failed."""


class HostUnavailable(HostLinkError):
    """No connection to the host could be made or kept."""


class HostTimeout(HostLinkError):
    """The host did not answer a request in time."""


class MacError(HostLinkError):
    """A response's MAC was missing or wrong: treated as no response at all."""


class SecurityError(TerminalError):
    """A key, PIN block or MAC problem. Messages never include key or PIN material."""


class KeyUnavailable(SecurityError):
    """No usable key (unknown terminal, no key exchange yet, a KSN for another key)."""


class TransitionError(TerminalError):
    """The state machine was asked for a move its table does not allow."""


class JournalError(TerminalError):
    """The electronic journal refused a record (for example one carrying a PIN)."""


class LedgerError(TerminalError):
    """The host ledger refused a posting (unbalanced, unknown account, ...)."""
