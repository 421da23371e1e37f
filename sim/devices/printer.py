"""An ESC/POS receipt printer on the far side of a serial line, that shows what it printed.

It parses the command stream a TM-T88 class printer understands (text, ``ESC @``, the
``ESC``/``GS`` mode commands with their argument bytes, feeds, ``GS V`` cut) and answers
the real-time status requests ``DLE EOT n`` at once, from the same paper roll model as the
in-process printer (:class:`~terminal.drivers.printer.roll.PaperRoll`). What was printed
is kept as text lines per receipt and can be saved as ``.txt`` and rendered as ``.png``
(Pillow), so a person or a test sees the receipt the customer would get.

Scripting handle (same as :class:`~terminal.drivers.printer.sim.SimPrinter`):
:meth:`load_paper`, :meth:`set_paper_low`, :meth:`open_cover`, :meth:`inject_jam`,
:meth:`clear_jam`, :attr:`receipts`; plus :meth:`garble_next` for a bad status byte.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from atm_common.files import private_dir, write_private
from terminal.drivers.printer.escpos import (
    COVER_OPEN,
    CUTTER_ERROR,
    FIXED_BITS,
    NEAR_END,
    PAPER_END,
)
from terminal.drivers.printer.roll import PaperRoll, RollHandle

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ESC, GS, DLE, LF = 0x1B, 0x1D, 0x10, 0x0A
# Argument bytes after ESC x / GS x for the commands python-escpos sends for text.
# Debian's fonts-dejavu-core (Makefile APT_PACKAGES); Pillow finds it by name in the
# system font folders
MONOSPACE_FONT = "DejaVuSansMono.ttf"
_ESC_ARGS = {b"@": 0, b"!": 1, b"E": 1, b"-": 1, b"a": 1, b"t": 1, b"M": 1, b"G": 1,
             b"{": 1, b"d": 1, b"J": 1, b"2": 0, b"3": 1, b"V": 1, b"r": 1}  # fmt: skip
_GS_ARGS = {b"!": 1, b"b": 1, b"B": 1, b"L": 2, b"W": 2, b"H": 1, b"f": 1, b"h": 1, b"w": 1}


class EscPosEmulator(RollHandle):
    def __init__(
        self, paper_lines: int = 2000, low_at: int = 200, out_dir: Path | None = None
    ) -> None:
        """``out_dir``: save every receipt there as .txt and .png when it is cut."""
        self.roll = PaperRoll(paper_lines, low_at)
        self.out_dir = out_dir
        self._buffer = bytearray()
        self._text = bytearray()
        self._garble = 0
        self.unknown_commands = 0
        self.cuts = 0

    def garble_next(self, n: int = 1) -> None:
        self._garble += n

    # -- Emulator protocol --
    def poll(self, wait: float) -> bytes:
        return b""

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        answer = bytearray()
        while self._buffer:
            used, out = self._step(bytes(self._buffer))
            if used == 0:
                break  # a command whose argument bytes have not arrived yet
            del self._buffer[:used]
            answer += out
        return bytes(answer)

    def _step(self, buf: bytes) -> tuple[int, bytes]:
        first = buf[0]
        if first == DLE:
            if len(buf) < 3:
                return 0, b""
            return 3, bytes([self._status_byte(buf[2])]) if buf[1] == 0x04 else b""
        if first == LF:
            self.roll.feed_line(self._text.decode("cp437"))
            self._text.clear()
            return 1, b""
        if first in (ESC, GS):
            if len(buf) < 2:
                return 0, b""
            table = _ESC_ARGS if first == ESC else _GS_ARGS
            cmd = buf[1:2]
            if first == GS and cmd == b"V":
                return self._cut(buf)
            if cmd not in table:
                self.unknown_commands += 1
                return 2, b""
            need = 2 + table[cmd]
            if len(buf) < need:
                return 0, b""
            if first == ESC and cmd == b"d":
                self.roll.feed(buf[2])
            return need, b""
        if first >= 0x20:
            self._text.append(first)
        return 1, b""

    def _cut(self, buf: bytes) -> tuple[int, bytes]:
        if len(buf) < 3:
            return 0, b""
        need = 4 if buf[2] in (65, 66) else 3  # function B carries a feed amount
        if len(buf) < need:
            return 0, b""
        if self._text:
            self.roll.feed_line(self._text.decode("cp437"))
            self._text.clear()
        self.roll.cut()
        self.cuts += 1
        if self.out_dir is not None and self.receipts:
            paths = self.save(self.out_dir)
            log.info("printer: receipt saved as %s and %s", *paths)
        return need, b""

    def _status_byte(self, n: int) -> int:
        if self._garble:
            self._garble -= 1
            return 0xFF
        value = FIXED_BITS
        if n == 2:
            value |= COVER_OPEN if self.roll.cover_open else 0
            value |= 0x20 if self.roll.lines_left <= 0 else 0
        elif n == 3:
            value |= CUTTER_ERROR if self.roll.jammed else 0
        elif n == 4:
            paper = self.roll.paper.value
            value |= PAPER_END if paper == "out" else NEAR_END if paper == "low" else 0
        return value

    # -- what came out --
    def save(self, directory: str | Path, index: int = -1, name: str = "") -> tuple[Path, Path]:
        """Write receipt ``index`` as ``<name>.txt`` and ``<name>.png``; returns both paths."""
        lines = self.receipts[index]
        folder = private_dir(directory)
        stem = name or f"receipt-{index % len(self.receipts) + 1:04d}"
        text_path = write_private(folder / f"{stem}.txt", "\n".join(lines) + "\n")
        png = io.BytesIO()
        render_png(lines).save(png, format="PNG")
        png_path = write_private(folder / f"{stem}.png", png.getvalue())
        return text_path, png_path


def render_png(lines: list[str], width_chars: int = 42) -> Image.Image:
    """The receipt as a strip of thermal paper: black monospace text on white."""
    from PIL import Image, ImageDraw, ImageFont  # on first use: a kiosk run needs none

    try:  # a receipt printer's font is monospace: the report's columns line up
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(MONOSPACE_FONT, 15)
    except OSError:  # not installed (fonts-dejavu-core): Pillow's own font, proportional
        font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox("M")
    char_w, line_h = max(1, int(right - left)), max(1, int(bottom - top)) + 6
    image = Image.new("L", (char_w * width_chars + 24, line_h * (len(lines) + 2) + 24), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((12, 12 + line_h * (i + 1)), line, fill=0, font=font)
    return image
