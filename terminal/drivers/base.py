"""Device ABC, status, and the backend registry.

Every device kind has one ABC (``terminal.drivers.<kind>.base``) whose public methods
validate arguments, log and translate errors, then call ``_do_*`` hooks that a backend
implements (the python-can ``BusABC`` model). Backends are registered by dotted path and
imported only when chosen, so a kiosk without OpenCV or pyscard still starts.
"""

from __future__ import annotations

import enum
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeAlias

from atm_common.errors import AtmError, ConfigError
from terminal.errors import DeviceUnavailable

log = logging.getLogger(__name__)


class DeviceStatus(enum.Enum):
    """Health as the terminal's mode logic sees it."""

    OK = "ok"
    DEGRADED = "degraded"  # works, with a warning (near-end cassette, stale GPS fix)
    FAULT = "fault"  # reported an error; needs attention
    OFFLINE = "offline"  # not answering / not opened / closed


# What :meth:`Device.info` may report: plain values that print and serialise as they are.
Scalar: TypeAlias = str | int | float | bool
InfoValue: TypeAlias = Scalar | tuple[Scalar, ...]


class Device(ABC):
    """Common life cycle: open, status, close (safe twice), context manager.

    Diagnostics (``atm diag status``) ask every device the same three questions, each a
    hook a backend overrides when it knows the answer: :meth:`info` (who it is: model,
    firmware, serial number, port ...; may talk to the device), :meth:`counter_values`
    (what it counted) and :meth:`last_error` (the fault it last reported or met); neither
    of the last two does I/O.
    """

    kind: str = "device"
    # True when calls wait on real I/O (a serial line, pcscd): the terminal then runs
    # them in a worker thread so the event loop (host link) keeps going.
    blocking: bool = True

    def __init__(self) -> None:
        self._opened = False
        self._closed = False

    def open(self) -> None:
        if self._closed:
            raise DeviceUnavailable(self.kind, "cannot reopen a closed device")
        if not self._opened:
            self._do_open()
            self._opened = True
            log.debug("%s opened (%s)", self.kind, type(self).__name__)

    def close(self) -> None:
        if self._opened and not self._closed:
            try:
                self._do_close()
            finally:
                log.debug("%s closed", self.kind)
        self._closed = True

    def reopen(self) -> None:
        """Close the device and open it afresh (the terminal's retry of a device that went
        OFFLINE): a port that went away, a USB adapter unplugged and plugged back, needs a
        new handle, not another try on the dead one. Raises as :meth:`open` does."""
        if self._opened and not self._closed:
            try:
                self._do_close()
            except (AtmError, OSError) as exc:  # the old handle is dead anyway
                log.debug("%s: closing the old handle: %s", self.kind, exc)
        self._opened = self._closed = False
        self.open()

    def status(self) -> DeviceStatus:
        if not self._opened or self._closed:
            return DeviceStatus.OFFLINE
        return self._do_status()

    def info(self) -> dict[str, InfoValue]:
        """What the device says about itself: model, firmware, serial number, port ...

        May talk to the device, so a device that does not answer raises the backend's
        usual :class:`~terminal.errors.DeviceError` (or a protocol error). Keys a device
        does not know are left out; values are never None.
        """
        self._require_open()
        return dict(self._do_info())

    def counter_values(self) -> dict[str, int]:
        """What the device (or its driver) counted: notes, retained cards, line errors ...

        Local state only, no I/O: safe on a device that stopped answering or is closed.
        """
        return dict(self._do_counter_values())

    def last_error(self) -> str | None:
        """The fault the device last reported or the driver last met, if any (no I/O)."""
        return self._do_last_error()

    def _require_open(self) -> None:
        if not self._opened or self._closed:
            raise DeviceUnavailable(self.kind, "device is not open")

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _do_open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the hardware. Default: nothing to acquire."""

    def _do_close(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware. Called at most once."""

    def _do_info(self) -> Mapping[str, InfoValue]:
        """Identity and properties for :meth:`info`. Default: nothing known."""
        return {}

    def _do_counter_values(self) -> Mapping[str, int]:
        """Counters for :meth:`counter_values`; no I/O. Default: none kept."""
        return {}

    def _do_last_error(self) -> str | None:
        """Last fault for :meth:`last_error`; no I/O. Default: none recorded."""
        return None

    @abstractmethod
    def _do_status(self) -> DeviceStatus: ...


# kind -> backend name -> "module:Class". Imported lazily by create_device().
BACKENDS: dict[str, dict[str, str]] = {
    "card_reader": {
        "sim": "terminal.drivers.card_reader.sim:SimCardReader",
        "pcsc": "terminal.drivers.card_reader.pcsc:PcscCardReader",
    },
    "pinpad": {
        "sim": "terminal.drivers.pinpad.sim:SimPinPad",
        "epp": "terminal.drivers.pinpad.epp:EppPinPad",
    },
    "dispenser": {
        "sim": "terminal.drivers.dispenser.sim:SimDispenser",
        "lcdm": "terminal.drivers.dispenser.lcdm:LcdmDispenser",
    },
    "camera": {
        "sim": "terminal.drivers.camera.sim:SimCamera",
        "opencv": "terminal.drivers.camera.opencv:OpenCvCamera",
    },
    "gps": {
        "sim": "terminal.drivers.gps.sim:SimGps",
        "nmea": "terminal.drivers.gps.nmea:NmeaGps",
    },
    "printer": {
        "sim": "terminal.drivers.printer.sim:SimPrinter",
        "escpos": "terminal.drivers.printer.escpos:EscPosPrinter",
    },
}


def backend_class(kind: str, backend: str) -> type[Device]:
    """Import and return the class registered for ``kind``/``backend``."""
    try:
        target = BACKENDS[kind][backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS.get(kind, {}))) or "none"
        raise ConfigError(
            "config", f"devices.{kind}.backend", f"unknown backend {backend!r} (known: {known})"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "config",
            f"devices.{kind}.backend",
            f"backend {backend!r} needs a package that is not installed: {exc.name}",
        ) from exc
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        raise TypeError(f"{target} is not a Device")
    return cls


def create_device(kind: str, backend: str, **options: Any) -> Device:
    """Build (not open) a device from its config section."""
    return backend_class(kind, backend)(**options)
