"""The terminal's set of devices, built from config and opened/closed together."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, TypeVar

from atm_common.clock import Clock
from atm_common.errors import AtmError, ConfigError
from terminal.config import TerminalConfig
from terminal.drivers.base import Device, DeviceStatus, backend_class
from terminal.drivers.camera.base import Camera
from terminal.drivers.card_reader.base import CardReader
from terminal.drivers.dispenser.base import Dispenser
from terminal.drivers.gps.base import Gps
from terminal.drivers.pinpad.base import PinPad
from terminal.drivers.printer.base import Printer

log = logging.getLogger(__name__)
D = TypeVar("D", bound=Device)


@dataclasses.dataclass
class Devices:
    card_reader: CardReader
    pinpad: PinPad
    dispenser: Dispenser
    camera: Camera | None = None
    gps: Gps | None = None
    printer: Printer | None = None  # receipts, reports (docs/supervisor.md)

    def all(self) -> dict[str, Device]:
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in found.items() if v is not None}

    def open(self) -> None:
        for device in self.all().values():
            device.open()

    def close(self) -> None:
        for name, device in self.all().items():
            with contextlib.suppress(AtmError):
                device.close()
            log.debug("%s closed", name)

    def status(self) -> dict[str, DeviceStatus]:
        return {name: device.status() for name, device in self.all().items()}


def _build(config: TerminalConfig, kind: str, base: type[D], clock: Clock) -> D:
    section = config.devices[kind]
    cls = backend_class(kind, section.backend)
    options: dict[str, Any] = dict(section.options)
    options.setdefault("clock", clock)
    try:
        device = cls(**options)
    except TypeError as exc:
        raise ConfigError(
            config.source, f"devices.{kind}", f"bad option for {section.backend}: {exc}"
        ) from exc
    if not isinstance(device, base):
        raise ConfigError(
            config.source, f"devices.{kind}.backend", f"{cls.__name__} is not a {base.__name__}"
        )
    return device


def build_devices(config: TerminalConfig, clock: Clock) -> Devices:
    """Instantiate (not open) every configured device."""
    return Devices(
        card_reader=_build(config, "card_reader", CardReader, clock),
        pinpad=_build(config, "pinpad", PinPad, clock),
        dispenser=_build(config, "dispenser", Dispenser, clock),
        camera=_build(config, "camera", Camera, clock) if "camera" in config.devices else None,
        gps=_build(config, "gps", Gps, clock) if "gps" in config.devices else None,
        printer=_build(config, "printer", Printer, clock) if "printer" in config.devices else None,
    )
