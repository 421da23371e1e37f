"""The receipt printer: what every backend offers, and the checks done before a print.

Why the sensors are a first-class answer: a kiosk must tell the customer *before* the
transaction that it cannot give a receipt (paper out, cover open, a jam), and offer to go
on without one. So :meth:`Printer.sensors` reports paper (ok / low / out), the cover and
a jam; :meth:`Printer.print_receipt` refuses to start on a printer that cannot finish, and
reports a receipt cut short when the paper ran out half way (the rest is lost, as on a
real printer). Paper low is ``DEGRADED`` (prints, needs an operator soon); paper out,
cover open or a jam is ``FAULT``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence

from terminal.drivers.base import Device, DeviceStatus
from terminal.errors import DeviceFault

log = logging.getLogger(__name__)

LINE_WIDTH = 40  # characters on an 80 mm roll in font A
MAX_LINES = 400  # one receipt; a journal print-out is split into several


class Paper(enum.Enum):
    OK = "ok"
    LOW = "low"
    OUT = "out"


@dataclasses.dataclass(frozen=True)
class PrinterSensors:
    """What the printer says about its paper, cover and cutter (no judgement here)."""

    paper: Paper = Paper.OK
    cover_open: bool = False
    jammed: bool = False

    @property
    def problem(self) -> str | None:
        """Why nothing can be printed now, or None."""
        if self.jammed:
            return "paper jam"
        if self.cover_open:
            return "cover open"
        if self.paper is Paper.OUT:
            return "paper out"
        return None

    def as_dict(self) -> dict[str, str | bool]:
        return {"paper": self.paper.value, "cover_open": self.cover_open, "jammed": self.jammed}


def check_lines(lines: Sequence[str]) -> list[str]:
    """Plain printable lines only: a control byte in a line would be a printer command."""
    if isinstance(lines, str):
        raise TypeError("lines must be a sequence of str, not one str")
    out: list[str] = []
    if len(lines) > MAX_LINES:
        raise ValueError(f"a receipt holds at most {MAX_LINES} lines, got {len(lines)}")
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise TypeError(f"line {i} is not a str")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in line):
            raise ValueError(f"line {i} holds a control character")
        out.append(line[:LINE_WIDTH])
    return out


class Printer(Device):
    kind = "printer"

    def __init__(self) -> None:
        super().__init__()
        self.printed = 0  # receipts finished
        self.cut_short = 0  # receipts the paper ran out on
        self._last_error: str | None = None

    def sensors(self) -> PrinterSensors:
        self._require_open()
        return self._do_sensors()

    def can_print(self) -> bool:
        """True when a receipt can be printed now (asks the device)."""
        return self.sensors().problem is None

    def print_receipt(self, lines: Sequence[str], *, title: str = "") -> None:
        """Print ``title`` (centred, bold) then ``lines`` and cut.

        Raises :class:`DeviceFault` before printing when the printer cannot print, and
        after when the paper ran out during this receipt.
        """
        body = check_lines(lines)
        head = check_lines([title])[0] if title else ""
        self._require_open()
        before = self._do_sensors()
        if before.problem is not None:
            self._last_error = before.problem
            raise DeviceFault(self.kind, f"cannot print: {before.problem}")
        self._do_print(head, body)
        after = self._do_sensors()
        if after.paper is Paper.OUT:
            self.cut_short += 1
            self._last_error = "paper ran out during a receipt"
            raise DeviceFault(self.kind, "paper ran out during the receipt")
        self.printed += 1
        log.info("printer: receipt %r printed (%d lines)", title, len(body))

    def _do_status(self) -> DeviceStatus:
        sensors = self._do_sensors()
        if sensors.problem is not None:
            self._last_error = sensors.problem
            return DeviceStatus.FAULT
        return DeviceStatus.DEGRADED if sensors.paper is Paper.LOW else DeviceStatus.OK

    def _do_counter_values(self) -> Mapping[str, int]:
        return {"receipts_printed": self.printed, "receipts_cut_short": self.cut_short}

    def _do_last_error(self) -> str | None:
        return self._last_error

    @abstractmethod
    def _do_sensors(self) -> PrinterSensors: ...

    @abstractmethod
    def _do_print(self, title: str, lines: list[str]) -> None: ...
