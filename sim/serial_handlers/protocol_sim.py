"""pyserial handler for ``sim://NAME``: an in-process emulator instead of a wire.

Modelled on pyserial's own ``loop://``. Writes go to the emulator's ``receive``; reads
return what it answered, and when that is not enough, ask ``poll(timeout)``, which lets
an emulator on a manual clock move time forward instead of anyone sleeping. A read
therefore never blocks: the driver code above it behaves as it would at a real port
whose timeout expired.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from serial import SerialBase, SerialException, to_bytes
from serial.serialutil import PortNotOpenError

from sim.devices.emulator import Emulator, lookup
from terminal.errors import DeviceUnavailable


class Serial(SerialBase):  # type: ignore[misc]
    BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

    is_open: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._emulator: Emulator | None = None
        self._buffer = bytearray()
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        parts = urllib.parse.urlsplit(self.portstr)
        if parts.scheme != "sim" or not parts.netloc:
            raise SerialException(f"expected sim://NAME, got {self.portstr!r}")
        try:
            self._emulator = lookup(parts.netloc)
        except DeviceUnavailable as exc:
            raise SerialException(str(exc)) from None
        self._buffer.clear()
        self.is_open = True

    def close(self) -> None:
        # SerialBase.close() only marks the port closed; nothing to flush to an emulator.
        self.is_open = False
        self._emulator = None

    def _reconfigure_port(self) -> None:
        return None

    def _emu(self) -> Emulator:
        if not self.is_open or self._emulator is None:
            raise PortNotOpenError()
        return self._emulator

    @property
    def in_waiting(self) -> int:
        self._emu()
        return len(self._buffer)

    def read(self, size: int = 1) -> bytes:
        emulator = self._emu()
        if len(self._buffer) < size:
            self._buffer += emulator.poll(float(self._timeout or 0.0))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def write(self, data: bytes) -> int:
        emulator = self._emu()
        payload = to_bytes(data)
        self._buffer += emulator.receive(payload)
        return len(payload)

    def reset_input_buffer(self) -> None:
        self._emu()
        self._buffer.clear()

    def reset_output_buffer(self) -> None:
        self._emu()

    def flush(self) -> None:
        self._emu()

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True

    def _update_rts_state(self) -> None:
        return None

    def _update_dtr_state(self) -> None:
        return None

    def _update_break_state(self) -> None:
        return None
