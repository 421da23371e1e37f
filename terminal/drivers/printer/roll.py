"""The paper roll both simulated printers share: lines left, low mark, cover, cutter.

A real thermal printer stops when the roll ends; what it was sent after that is lost, and
the receipt it was printing comes out cut short. The roll keeps that behaviour so the
driver's "paper ran out during the receipt" path is exercised, not assumed.
"""

from __future__ import annotations

from terminal.drivers.printer.base import Paper, PrinterSensors


class PaperRoll:
    def __init__(self, lines: int = 2000, low_at: int = 200) -> None:
        self.lines_left = lines
        self.low_at = low_at
        self.forced_low = False
        self.cover_open = False
        self.jammed = False
        self.receipts: list[list[str]] = []  # every receipt started, as printed lines
        self.lost_lines = 0  # lines sent after the paper ended
        self._current: list[str] | None = None

    def load(self, lines: int) -> None:
        self.lines_left = lines
        self.forced_low = False

    @property
    def paper(self) -> Paper:
        if self.lines_left <= 0:
            return Paper.OUT
        if self.forced_low or self.lines_left <= self.low_at:
            return Paper.LOW
        return Paper.OK

    def sensors(self) -> PrinterSensors:
        return PrinterSensors(self.paper, self.cover_open, self.jammed)

    def printing(self) -> bool:
        return self.lines_left > 0 and not self.cover_open and not self.jammed

    def start_receipt(self) -> None:
        if self._current is None:
            self._current = []
            self.receipts.append(self._current)

    def feed_line(self, text: str) -> None:
        self.start_receipt()
        assert self._current is not None
        if not self.printing():
            self.lost_lines += 1
            return
        self._current.append(text)
        self.lines_left -= 1

    def feed(self, n: int) -> None:
        if self.printing():
            self.lines_left = max(0, self.lines_left - n)

    def cut(self) -> None:
        self._current = None


class RollHandle:
    """The scripting handle both simulated printers give tests and the demo: the roll's
    receipts, and paper, cover and jam as an operator or a fault would set them."""

    roll: PaperRoll

    @property
    def receipts(self) -> list[list[str]]:
        return self.roll.receipts

    def load_paper(self, lines: int = 2000) -> None:
        self.roll.load(lines)

    def set_paper_low(self, on: bool = True) -> None:
        self.roll.forced_low = on

    def open_cover(self, on: bool = True) -> None:
        self.roll.cover_open = on

    def inject_jam(self) -> None:
        self.roll.jammed = True

    def clear_jam(self) -> None:
        self.roll.jammed = False
