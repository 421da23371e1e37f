"""The host link's leaves of the exception tree (root: :mod:`atm_common.errors`).

Codec errors are also ``ValueError`` and timeouts also ``TimeoutError``, so code that
knows only the standard library still catches them sensibly.
"""

from __future__ import annotations

from atm_common.errors import AtmError, ExitCode, RemoteProtocolError


class CodecError(RemoteProtocolError, ValueError):
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


class HostLinkError(AtmError):
    """The link to the bank host failed."""

    exit_code = ExitCode.HOST


class HostUnavailable(HostLinkError):
    """No connection to the host could be made or kept."""


class HostTimeout(HostLinkError, TimeoutError):
    """The host did not answer a request in time."""


class MacError(HostLinkError):
    """A response's MAC was missing or wrong: treated as no response at all."""
