"""The emulator interface, and the registry behind ``sim://NAME`` serial URLs.

An emulator is a sans-I/O model of a device on the far side of a serial line: it takes
the bytes the terminal wrote and returns the bytes the device answers with. Devices
that speak on their own (a GPS every second, a keypad when pressed) return those from
:meth:`Emulator.poll`, which is also how time passes: the terminal waited up to
``wait`` seconds for input, so an emulator on a manual clock advances it by that much.
The same emulator object runs behind a real pseudo-terminal (:mod:`sim.devices.pty`)
or in-process behind pyserial's ``sim://`` handler (:mod:`sim.serial_handlers`).
"""

from __future__ import annotations

import threading
from typing import Protocol

import serial

from terminal.errors import DeviceUnavailable


class Emulator(Protocol):
    def receive(self, data: bytes) -> bytes:
        """Bytes from the terminal in; the device's immediate answer out (may be b"")."""
        ...

    def poll(self, wait: float) -> bytes:
        """The terminal waited up to ``wait`` s for input: what the device sent meanwhile."""
        ...


_registry: dict[str, Emulator] = {}
_lock = threading.Lock()
_HANDLERS = "sim.serial_handlers"


def register_serial_handler() -> None:
    """Teach pyserial the ``sim://`` scheme (its ``protocol_handler_packages`` hook).

    The simulator registers itself, so the terminal's drivers never need to know it: they
    open whatever URL their config names.
    """
    if _HANDLERS not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLERS)


def register(name: str, emulator: Emulator) -> str:
    """Make ``emulator`` reachable as ``sim://name``; returns that URL."""
    register_serial_handler()
    with _lock:
        if name in _registry and _registry[name] is not emulator:
            raise ValueError(f"an emulator is already registered as sim://{name}")
        _registry[name] = emulator
    return f"sim://{name}"


def unregister(name: str) -> None:
    with _lock:
        _registry.pop(name, None)


def lookup(name: str) -> Emulator:
    with _lock:
        try:
            return _registry[name]
        except KeyError:
            known = ", ".join(sorted(_registry)) or "none"
            raise DeviceUnavailable(
                "serial", f"no emulator sim://{name} (registered: {known})"
            ) from None
