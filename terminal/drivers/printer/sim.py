"""An in-process receipt printer: a paper roll that runs down, a cover, a cutter.

It keeps every receipt it printed as text lines (:attr:`receipts`) and offers the same
scripting handle as the ESC/POS emulator (:mod:`sim.devices.printer`), so the contract
suite drives both alike: :meth:`load_paper`, :meth:`set_paper_low`, :meth:`open_cover`,
:meth:`inject_jam`, :meth:`clear_jam`.
"""

from __future__ import annotations

from collections.abc import Mapping

from atm_common.clock import Clock
from terminal.drivers.base import InfoValue
from terminal.drivers.printer.base import Paper, Printer, PrinterSensors
from terminal.drivers.printer.roll import PaperRoll, RollHandle


class SimPrinter(RollHandle, Printer):
    blocking = False

    def __init__(
        self, clock: Clock | None = None, paper_lines: int = 2000, low_at: int = 200
    ) -> None:
        super().__init__()
        self.roll = PaperRoll(paper_lines, low_at)

    # -- Printer hooks --
    def _do_sensors(self) -> PrinterSensors:
        return self.roll.sensors()

    def _do_print(self, title: str, lines: list[str]) -> None:
        self.roll.start_receipt()
        if title:
            self.roll.feed_line(title)
        for line in lines:
            self.roll.feed_line(line)
        self.roll.cut()

    def _do_info(self) -> Mapping[str, InfoValue]:
        return {"model": "sim printer", "paper_lines_left": self.roll.lines_left}


__all__ = ["Paper", "SimPrinter"]
