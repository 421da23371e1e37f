"""What the printer prints: customer receipts, the balancing report, the journal.

Plain text lines (the printer driver adds the ESC/POS). A receipt shows the PAN masked
first 6 / last 4 and never anything of the PIN; amounts are formatted for people.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from atm_common.masking import mask_pan
from atm_common.money import format_minor
from host_link.supervision import CassetteCount
from terminal.drivers.printer.base import LINE_WIDTH
from terminal.supervisor.exchange import Balancing


def _row(label: str, value: str) -> str:
    return f"{label}{value:>{LINE_WIDTH - len(label)}}"


def session_receipt(
    *, terminal: str, when: str, pan: str, kind: str, amount: int | None, result: str,
    currency: str, reference: str = "",
) -> list[str]:  # fmt: skip
    lines = [_row("TERMINAL", terminal), _row("DATE", when), _row("CARD", mask_pan(pan))]
    lines.append(_row("TRANSACTION", kind.upper()))
    if amount is not None:
        lines.append(_row("AMOUNT", format_minor(amount, currency)))
    lines.append(_row("RESULT", result.upper()))
    if reference:
        lines.append(_row("REFERENCE", reference))
    return lines


def balancing_report(
    *, terminal: str, when: str, role: str, before: Sequence[CassetteCount], result: Balancing,
    currency: str,
) -> list[str]:  # fmt: skip

    def money(value: int) -> str:
        return format_minor(value, currency)

    lines = [_row("TERMINAL", terminal), _row("DATE", when), _row("BY", role), ""]
    lines.append("POS    NOTE  LOAD DISP REJ RETR LEFT")  # note: its value; then note counts
    for c in before:
        lines.append(
            f"{c.position:>3} {money(c.denomination):>7} {c.loaded:>5} {c.dispensed:>4}"
            f" {c.rejected:>3} {c.retracted:>4} {c.remaining:>4}"
        )
    lines += [
        "",
        _row("HOST EXPECTED", money(result.host_expected)),
        _row("COUNTERS", money(result.counters)),
        _row("FOUND", money(result.found)),
        _row("DIFFERENCE", money(result.difference)),
        _row("STATUS", "BALANCED" if result.difference == 0 else
             ("SHORTAGE" if result.difference < 0 else "OVERAGE")),
        _row("NEW LOAD", money(result.loaded)),
        _row("EXCHANGE", result.exchange_id),
    ]  # fmt: skip
    return lines


def journal_printout(lines: Iterable[str]) -> list[str]:
    """Journal lines folded to the paper's width (a printout, not a new record)."""
    out: list[str] = []
    for line in lines:
        while len(line) > LINE_WIDTH:
            out.append(line[:LINE_WIDTH])
            line = "  " + line[LINE_WIDTH:]
        out.append(line)
    return out
