"""Open a serial port from a pyserial URL: ``/dev/ttyUSB0``, a pty, or ``sim://NAME``.

The ``sim`` scheme is served by :mod:`sim.serial_handlers` when the simulator package is
installed; a kiosk without it simply cannot open ``sim://`` URLs.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import serial

from terminal.errors import DeviceUnavailable

log = logging.getLogger(__name__)

_SIM_HANDLERS = "sim.serial_handlers"


def _register_sim_handlers() -> None:
    registered = _SIM_HANDLERS in serial.protocol_handler_packages
    if not registered and importlib.util.find_spec(_SIM_HANDLERS) is not None:
        serial.protocol_handler_packages.append(_SIM_HANDLERS)


def open_port(url: str, device: str, **settings: Any) -> serial.SerialBase:
    """Open ``url`` with pyserial ``settings`` (baudrate, parity, timeout ...).

    Raises :class:`DeviceUnavailable` naming the device and the URL when it cannot.
    """
    _register_sim_handlers()
    try:
        port = serial.serial_for_url(url, **settings)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise DeviceUnavailable(device, f"cannot open serial port {url!r}: {exc}") from exc
    log.debug("%s: opened %s", device, url)
    return port
