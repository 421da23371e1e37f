"""Printing from the flow: asking the printer first, and never letting it stop a session.

A receipt is a courtesy, cash is not: a printer that fails is journaled and reported in
the device status list, and the session goes on. The question "can a receipt be printed"
is asked before the transaction, so the customer is told then, not after the cash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from atm_common.errors import AtmError
from terminal.drivers.printer.base import Printer, check_lines

log = logging.getLogger(__name__)


def printer_problem(printer: Printer | None) -> str | None:
    """Why no receipt can be printed now (None: it can, or there is no printer at all)."""
    if printer is None:
        return None
    try:
        return printer.sensors().problem
    except AtmError as exc:
        return f"printer not answering: {exc}"


def print_lines(printer: Printer, lines: Sequence[str], *, title: str = "") -> str | None:
    """Print; returns None when printed, else the reason it was not (never raises)."""
    try:
        folded = [line[i : i + 40] for line in lines for i in range(0, max(len(line), 1), 40)]
        printer.print_receipt(check_lines(folded), title=title[:40])
    except (AtmError, ValueError) as exc:
        log.warning("printer: %s", exc)
        return str(exc)
    return None
