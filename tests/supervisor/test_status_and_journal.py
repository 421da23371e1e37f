"""Device status list (diag -> attention -> 0800/161) and `atm journal search`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from atm_common.clock import ManualClock
from host_link.supervision import decode_status
from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from terminal.config import DeviceConfig, TerminalConfig
from terminal.diag.status import check_device
from terminal.journal import Journal
from terminal.supervisor.attention import attention_for
from terminal.supervisor.journal_search import search
from terminal.supervisor.status_message import status_request

PAN = "4761739001010010"


def test_attention_levels_and_who_acts() -> None:
    assert attention_for("printer", "ok") == ("none", "none")
    assert attention_for("printer", "degraded") == ("soon", "operator")
    assert attention_for("printer", "fault", "paper out") == ("now", "operator")
    assert attention_for("printer", "fault", "paper jam") == ("now", "engineer")
    assert attention_for("dispenser", "fault", "feed jam") == ("now", "engineer")
    assert attention_for("dispenser", "degraded") == ("soon", "operator")
    assert attention_for("card_reader", "offline") == ("now", "engineer")


def test_printer_paper_out_in_diag_and_the_status_message() -> None:
    emulator = EscPosEmulator(paper_lines=0)
    config = TerminalConfig(terminal_id="ATM00001")
    section = DeviceConfig("escpos", {"url": register("diag-printer", emulator)})
    report = check_device(config, "printer", section, ManualClock()).as_dict()
    assert (report["state"], report["attention"], report["actor"]) == ("fault", "now", "operator")
    emulator.load_paper(2000)  # the operator changes the roll: the attention clears itself
    again = check_device(config, "printer", section, ManualClock()).as_dict()
    assert (again["state"], again["attention"]) == ("ok", "none")
    request = status_request("in_service", 500_000, [report, {"kind": "dispenser", "state": "ok"}])
    assert request["70"] == "161"
    mode, cash, devices = decode_status(request["63"])
    assert (mode, cash) == ("in_service", 500_000)
    assert [(d.kind, d.attention, d.actor) for d in devices] == [
        ("printer", "now", "operator"),
        ("dispenser", "none", "none"),
    ]


def test_journal_search_by_card_session_time_and_kind(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.db", clock)
    journal.record("card_read", "S1", pan=PAN)
    journal.record("withdrawal_approved", "S1", amount=20_000, durable=True)
    clock.advance(3600)
    journal.record("card_read", "S2", pan="5413330089010012")
    journal.record("session_end", "S2", durable=True)
    journal.record("supervisor_enter", role="replenisher")
    journal.record("supervisor_exit", role="replenisher")
    journal.close()
    path = tmp_path / "journal.db"
    by_card = search(path, card=PAN)
    assert [(e.session, e.event) for e in by_card] == [
        ("S1", "card_read"),
        ("S1", "withdrawal_approved"),
    ]
    assert by_card[0].data["pan"] == "476173******0010"
    assert [e.event for e in search(path, event="supervisor_*")] == [
        "supervisor_enter",
        "supervisor_exit",
    ]
    late = by_card[-1].time
    assert all(e.time > late for e in search(path, since=late[:-6] + "59.999"))
    assert [e.event for e in search(path, session="S2")] == ["card_read", "session_end"]
    run = subprocess.run(
        [sys.executable, "-m", "atm", "journal", "search", "--journal", str(path),
         "--card", PAN, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert [x["event"] for x in lines] == ["card_read", "withdrawal_approved"]
    assert PAN not in run.stdout


def test_journal_search_by_card_finds_a_supervisor_cards_rows_outside_sessions(
    tmp_path: Path,
) -> None:
    staff = "6009990000000018"
    journal = Journal(tmp_path / "journal.db", ManualClock())
    journal.record("supervisor_refused", pan=staff, via="card", code="55")
    journal.record("supervisor_enter", role="replenisher", via="card", pan=staff)
    journal.record("supervisor_exit", role="replenisher")
    journal.record("card_read", "S1", pan=PAN)
    journal.record("supervisor_enter", role="technician", via="card", pan="6009990000000026")
    journal.close()
    found = search(tmp_path / "journal.db", card=staff)
    assert [(e.session, e.event) for e in found] == [
        (None, "supervisor_refused"),
        (None, "supervisor_enter"),
    ]
    assert found[1].data["pan"] == "600999******0018"
    assert [e.event for e in search(tmp_path / "journal.db", card=PAN)] == ["card_read"]
