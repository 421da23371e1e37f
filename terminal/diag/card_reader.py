"""``atm diag card-reader [--json]``: readers, ATRs and the masked PAN of an inserted card.

Why: on site the first questions are "does pcscd run, does it see the reader, does the
chip answer, can we read it?". :func:`card_reader_report` answers all four in one dict
(the ``--json`` output) without ever raising for an expected failure: a stopped pcscd or
a mute card is a finding to report, not a crash. :func:`format_report` is the human view.
The PAN only ever appears masked (first 6 / last 4); the cardholder name is left out.

JSON shape::

    {"pattern": "Virtual PCD", "service": "ok", "error": null,
     "selected_reader": "Virtual PCD 00 00",
     "readers": [{"name": "Virtual PCD 00 00", "card_present": true,
                  "atr": "3B 68 00 00 41 54 4D 53 49 4D 30 31",
                  "atr_info": {"convention": "direct", "protocols": ["T=0"], ...}}],
     "card": {"masked_pan": "476173******0010", "expiry": "3012", "service_code": "201"}}
"""

from __future__ import annotations

import logging
from typing import Any

from terminal.drivers.card_reader.atr import AtrError, parse_atr
from terminal.errors import DeviceError

log = logging.getLogger(__name__)


def _atr_entry(name: str, present: bool, atr: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "card_present": present, "atr": None}
    if present and atr:
        entry["atr"] = atr.hex(" ").upper()
        try:
            entry["atr_info"] = parse_atr(atr).as_dict()
        except AtrError as exc:
            entry["atr_error"] = str(exc)
    return entry


def card_reader_report(
    reader: str = "Virtual PCD", read: bool = True, read_timeout: float = 5.0
) -> dict[str, Any]:
    """Readers pcscd offers, each card's ATR, and (``read``) the selected card's masked PAN."""
    report: dict[str, Any] = {
        "pattern": reader,
        "service": "unavailable",
        "error": None,
        "selected_reader": None,
        "readers": [],
        "card": None,
    }
    try:
        from terminal.drivers.card_reader.pcsc import PcscCardReader
    except ImportError as exc:
        report["error"] = f"pyscard is not installed ({exc.name}): pip install -e '.[pcsc]'"
        return report
    with PcscCardReader(reader, read_timeout=read_timeout) as device:
        try:
            states = device.reader_states()
        except DeviceError as exc:
            report["error"] = str(exc)
            return report
        report["service"] = "ok"
        report["readers"] = [_atr_entry(*state) for state in states]
        try:
            present = device.wait_for_card(0.0)
        except DeviceError as exc:
            report["error"] = str(exc)
            return report
        report["selected_reader"] = device.reader_name
        if read and present:
            try:
                card = device.read_card()
            except DeviceError as exc:
                report["card"] = {"error": str(exc)}
            else:
                report["card"] = {
                    "masked_pan": card.masked_pan,
                    "expiry": card.expiry,
                    "service_code": card.service_code,
                }
    log.debug("card reader diagnostics: %d reader(s)", len(report["readers"]))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as lines for a terminal screen."""
    lines = [f"pcscd: {report['service']}"]
    if report["error"]:
        lines.append(f"error: {report['error']}")
    for entry in report["readers"]:
        mark = "*" if entry["name"] == report["selected_reader"] else " "
        state = f"card, ATR {entry['atr']}" if entry["card_present"] else "no card"
        lines.append(f"{mark} {entry['name']}: {state}")
        info = entry.get("atr_info")
        if info:
            protocols = ", ".join(info["protocols"])
            lines.append(
                f"    {info['convention']} convention, {protocols}, "
                f"historical {info['historical_text']!r}"
            )
        if entry.get("atr_error"):
            lines.append(f"    {entry['atr_error']}")
    card = report["card"]
    if card is not None:
        if "error" in card:
            lines.append(f"card: unreadable: {card['error']}")
        else:
            lines.append(
                f"card: {card['masked_pan']} expires {card['expiry']} "
                f"service code {card['service_code']}"
            )
    elif not report["readers"] and report["service"] == "ok":
        lines.append("no readers")
    return "\n".join(lines)
