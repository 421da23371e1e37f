"""The ESC/POS emulator's output (text and PNG) and the driver on a garbled line."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from atm_common.errors import RemoteProtocolError
from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.devices.pty import PtyBridge
from terminal.drivers.printer.escpos import EscPosPrinter, encode_receipt

pytestmark = pytest.mark.serial_pty


def test_receipt_over_a_pty_comes_out_as_text_and_png(tmp_path: Path) -> None:
    emulator = EscPosEmulator()
    with PtyBridge(emulator, "escpos", interval=0.005) as bridge:
        with EscPosPrinter(bridge.path) as printer:
            printer.print_receipt(["CARD 476173******0010", "AMOUNT   USD 70.00"], title="BANK")
        with bridge.lock:
            text, png = emulator.save(tmp_path, name="r1")
    assert text.read_text() == "BANK\nCARD 476173******0010\nAMOUNT   USD 70.00\n"
    image = Image.open(png)
    assert image.format == "PNG" and image.size[1] > 40
    assert image.getextrema()[0] < 64  # there is ink on it
    assert oct(png.stat().st_mode & 0o777) == "0o600"


def test_bytes_split_anywhere_parse_the_same() -> None:
    data = encode_receipt("T", ["alpha", "beta"])
    emulator = EscPosEmulator()
    for i in range(len(data)):
        emulator.receive(data[i : i + 1])
    assert emulator.receipts == [["T", "alpha", "beta"]] and emulator.unknown_commands == 0


def test_garbled_status_is_a_protocol_error() -> None:
    emulator = EscPosEmulator()
    with EscPosPrinter(register("escpos-garble", emulator)) as printer:
        emulator.garble_next()
        with pytest.raises(RemoteProtocolError, match="DLE EOT"):
            printer.sensors()
        assert printer.can_print()  # the next question is answered


def test_the_emulator_saves_each_receipt_when_it_is_cut(tmp_path: Path) -> None:
    emulator = EscPosEmulator(out_dir=tmp_path / "printer")
    emulator.receive(encode_receipt("ONE", ["a"]) + encode_receipt("TWO", ["b"]))
    saved = sorted(p.name for p in (tmp_path / "printer").iterdir())
    assert saved == ["receipt-0001.png", "receipt-0001.txt", "receipt-0002.png", "receipt-0002.txt"]
    assert (tmp_path / "printer" / "receipt-0002.txt").read_text() == "TWO\nb\n"
