"""Open a serial port from a pyserial URL: ``/dev/ttyUSB0``, a pty, or ``sim://NAME``.

Other schemes (the simulator's ``sim://``) are registered in pyserial by whoever provides
them; this module knows none of them.
"""

from __future__ import annotations

import logging
from typing import Any

import serial

from terminal.errors import DeviceUnavailable

log = logging.getLogger(__name__)


def open_port(url: str, device: str, **settings: Any) -> serial.SerialBase:
    """Open ``url`` with pyserial ``settings`` (baudrate, parity, timeout ...).

    Raises :class:`DeviceUnavailable` naming the device and the URL when it cannot.
    """
    try:
        port = serial.serial_for_url(url, **settings)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise DeviceUnavailable(device, f"cannot open serial port {url!r}: {exc}") from exc
    log.debug("%s: opened %s", device, url)
    return port
