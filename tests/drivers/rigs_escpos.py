"""Contract-suite rigs for the ESC/POS printer: the real driver to the emulator.

Two rigs: ``escpos`` on ``sim://`` (in-process pyserial handler) and ``escpos-pty``
through a real pseudo-terminal (:class:`sim.devices.pty.PtyBridge`), so the whole printer
contract also runs over the kernel's tty layer. The printer suite asserts no timing, so
unlike the LCDM it can run over a pty on the system clock.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from atm_common.clock import Clock
from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.devices.pty import PtyBridge
from terminal.drivers.base import Device
from terminal.drivers.printer.escpos import EscPosPrinter

_names = itertools.count()


class _Locked:
    """The emulator's scripting handle, each call under the bridge's lock."""

    def __init__(self, emulator: EscPosEmulator, lock: threading.Lock) -> None:
        self._emulator, self._lock = emulator, lock

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            value = getattr(self._emulator, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return call


class _PtyPrinter(EscPosPrinter):
    """Stops its bridge when the rig closes it."""

    bridge: PtyBridge

    def close(self) -> None:
        super().close()
        self.bridge.stop()


def build_escpos(clock: Clock, paper_lines: int = 2000, **options: Any) -> tuple[Device, Any]:
    emulator = EscPosEmulator(paper_lines=paper_lines)
    url = register(f"escpos-contract-{next(_names)}", emulator)
    return EscPosPrinter(url, clock, **options), emulator


def build_escpos_pty(clock: Clock, paper_lines: int = 2000, **options: Any) -> tuple[Device, Any]:
    emulator = EscPosEmulator(paper_lines=paper_lines)
    bridge = PtyBridge(emulator, "escpos", interval=0.005)
    path = bridge.start()
    device = _PtyPrinter(path, clock, **options)
    device.bridge = bridge
    return device, _Locked(emulator, bridge.lock)


EXTRA_RIGS = {"printer": {"escpos": build_escpos, "escpos-pty": build_escpos_pty}}
