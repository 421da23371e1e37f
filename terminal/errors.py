"""The terminal's leaves of the exception tree (root: :mod:`atm_common.errors`).

Device errors carry the device's name and, where it reported one, its own error code;
a timeout is also a ``TimeoutError``.
"""

from __future__ import annotations

from atm_common.errors import AtmError, ExitCode


class DeviceError(AtmError):
    """A device failed. ``device`` names it (``dispenser``, ``pinpad`` ...)."""

    exit_code = ExitCode.DEVICE

    def __init__(self, device: str, message: str, code: int | None = None) -> None:
        self.device = device
        self.code = code
        detail = f" (device code 0x{code:02X})" if code is not None else ""
        super().__init__(f"{device}: {message}{detail}")


class DeviceTimeout(DeviceError, TimeoutError):
    """The device, or the customer in front of it, did not answer in time."""


class DeviceFault(DeviceError):
    """The device reported a fault; ``code`` is the device's own error code."""


class DeviceUnavailable(DeviceError):
    """The device is absent, closed or out of service."""


class TransitionError(AtmError):
    """The state machine was asked for a move its table does not allow."""


class JournalError(AtmError):
    """The electronic journal refused a record (for example one carrying a PIN)."""
