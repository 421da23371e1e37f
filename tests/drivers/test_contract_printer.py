"""Receipt printer contract: every backend (sim, ESC/POS on sim://, ESC/POS over a pty)."""

from __future__ import annotations

from typing import Any

import pytest

from terminal.drivers.base import DeviceStatus
from terminal.drivers.printer.base import Paper
from terminal.errors import DeviceFault

from .conftest import RigFactory


def test_prints_a_receipt_that_comes_out_as_sent(printer_factory: RigFactory) -> None:
    printer, handle = printer_factory()
    assert printer.status() is DeviceStatus.OK
    printer.print_receipt(["CARD 476173******0010", "WITHDRAWAL   USD 70.00"], title="MAIN ST")
    assert handle.receipts == [["MAIN ST", "CARD 476173******0010", "WITHDRAWAL   USD 70.00"]]
    assert printer.counter_values()["receipts_printed"] == 1


def test_paper_low_is_degraded_and_still_prints(printer_factory: RigFactory) -> None:
    printer, handle = printer_factory()
    handle.set_paper_low()
    assert printer.sensors().paper is Paper.LOW
    assert printer.status() is DeviceStatus.DEGRADED
    printer.print_receipt(["one"])
    assert handle.receipts == [["one"]]


@pytest.mark.parametrize(
    ("inject", "reason"),
    [
        (lambda h: h.open_cover(), "cover open"),
        (lambda h: h.inject_jam(), "paper jam"),
        (lambda h: h.load_paper(0), "paper out"),
    ],
)
def test_refuses_before_printing_when_it_cannot(
    printer_factory: RigFactory, inject: Any, reason: str
) -> None:
    printer, handle = printer_factory()
    inject(handle)
    assert printer.status() is DeviceStatus.FAULT
    assert printer.can_print() is False
    with pytest.raises(DeviceFault, match=reason):
        printer.print_receipt(["x"])
    assert handle.receipts == []
    assert printer.last_error() == reason


def test_fault_clears_when_the_device_recovers(printer_factory: RigFactory) -> None:
    printer, handle = printer_factory()
    handle.inject_jam()
    assert printer.status() is DeviceStatus.FAULT
    handle.clear_jam()
    assert printer.status() is DeviceStatus.OK
    printer.print_receipt(["after the engineer"])
    assert handle.receipts == [["after the engineer"]]


def test_paper_running_out_mid_receipt_is_reported(printer_factory: RigFactory) -> None:
    printer, handle = printer_factory(paper_lines=3)
    with pytest.raises(DeviceFault, match="ran out during"):
        printer.print_receipt(["a", "b", "c", "d", "e"], title="T")
    assert handle.receipts == [["T", "a", "b"]]  # the rest is lost, as on paper
    assert printer.sensors().paper is Paper.OUT
    assert printer.counter_values() == {"receipts_printed": 0, "receipts_cut_short": 1}
    handle.load_paper(100)
    printer.print_receipt(["again"])
    assert handle.receipts[-1] == ["again"]


def test_refuses_lines_that_would_be_printer_commands(printer_factory: RigFactory) -> None:
    printer, handle = printer_factory()
    with pytest.raises(ValueError, match="control character"):
        printer.print_receipt(["ok", "bad\x1b@"])
    with pytest.raises(TypeError):
        printer.print_receipt("one string")  # type: ignore[arg-type]
    assert handle.receipts == []
