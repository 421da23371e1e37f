"""An ESC/POS receipt printer on a serial line (Epson TM-T88 and its many clones).

The print bytes are made by python-escpos (``escpos.printer.Dummy`` collects what its
commands would send) rather than by hand: the library keeps the command set, code pages
and quirks of the printer families. This driver only owns the line: it opens the port,
writes those bytes, and asks the printer its real-time status with ``DLE EOT n``
(n = 2 offline cause: cover open; 3 error cause: cutter jam; 4 roll sensor: near end,
end). Every status byte has the fixed pattern ``0xx1 0xx10``; a byte without it is a
garbled line, not a status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import serial

from atm_common.errors import RemoteProtocolError
from terminal.drivers.base import InfoValue
from terminal.drivers.printer.base import Paper, Printer, PrinterSensors
from terminal.drivers.serial_port import open_port
from terminal.errors import DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)

DLE_EOT = b"\x10\x04"
OFFLINE_CAUSE, ERROR_CAUSE, ROLL_SENSOR = 2, 3, 4
FIXED_MASK, FIXED_BITS = 0x93, 0x12
COVER_OPEN = 0x04
CUTTER_ERROR, UNRECOVERABLE = 0x08, 0x20
NEAR_END, PAPER_END = 0x0C, 0x60


def encode_receipt(title: str, lines: list[str]) -> bytes:
    """The ESC/POS bytes for a receipt: init, bold centred title, body, feed and cut."""
    from escpos.printer import Dummy  # on first use: it pulls in qrcode, barcode, yaml

    out = Dummy()
    out.hw("INIT")
    if title:
        out.set(align="center", bold=True)
        out.text(title + "\n")
        out.set_with_default()
    for line in lines:
        out.text(line + "\n")
    out.cut()  # feeds to the cutter first
    return bytes(out.output)


class EscPosPrinter(Printer):
    def __init__(
        self,
        url: str,
        clock: Any = None,
        baudrate: int = 19200,
        parity: str = "N",
        status_timeout: float = 1.0,
    ) -> None:
        super().__init__()
        self.url = url  # a pyserial URL: /dev/ttyUSB0, a pty, sim://NAME
        self.baudrate = baudrate
        self.parity = parity
        self.status_timeout = status_timeout
        self._port: serial.SerialBase | None = None

    def _do_open(self) -> None:
        self._port = open_port(
            self.url, self.kind, baudrate=self.baudrate, parity=self.parity,
            timeout=self.status_timeout,
        )  # fmt: skip

    def _do_close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def _line(self) -> serial.SerialBase:
        if self._port is None:
            raise DeviceUnavailable(self.kind, "device is not open")
        return self._port

    def _status(self, n: int) -> int:
        port = self._line()
        port.reset_input_buffer()
        port.write(DLE_EOT + bytes([n]))
        port.flush()
        answer = port.read(1)
        if not answer:
            self._last_error = f"no answer to DLE EOT {n}"
            raise DeviceTimeout(self.kind, f"no answer to DLE EOT {n} (status)")
        value = int(answer[0])
        if value & FIXED_MASK != FIXED_BITS:
            self._last_error = f"garbled status byte 0x{value:02X}"
            raise RemoteProtocolError(f"printer: DLE EOT {n} answered 0x{value:02X}")
        return value

    def _do_sensors(self) -> PrinterSensors:
        offline = self._status(OFFLINE_CAUSE)
        error = self._status(ERROR_CAUSE)
        roll = self._status(ROLL_SENSOR)
        paper = Paper.OK
        if roll & PAPER_END:
            paper = Paper.OUT
        elif roll & NEAR_END:
            paper = Paper.LOW
        return PrinterSensors(
            paper=paper,
            cover_open=bool(offline & COVER_OPEN),
            jammed=bool(error & (CUTTER_ERROR | UNRECOVERABLE)),
        )

    def _do_print(self, title: str, lines: list[str]) -> None:
        port = self._line()
        port.write(encode_receipt(title, lines))
        port.flush()

    def _do_info(self) -> Mapping[str, InfoValue]:
        return {"port": self.url, "protocol": "ESC/POS", "baudrate": self.baudrate}
