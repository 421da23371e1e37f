"""Supervisor mode at the kiosk (terminal/supervisor/desk.py, keyentry.py): F8 and the key
on the sim PIN pad, the menu driven by scripted keys, against a live host (real TCP, real
SQLite): the exchange balances to the cent, roles see only their functions, wrong keys
lock the entry, an idle supervisor is logged out, customers wait until the supervisor
leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.host.supervision.fleet import list_terminals
from terminal.drivers.pinpad.sim import CANCEL, Fkey, Keys, Pin
from terminal.drivers.printer.escpos import EscPosPrinter
from terminal.fsm.customer import State
from terminal.supervisor.console import SupervisorConsole
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.desk import SupervisorDesk
from terminal.supervisor.roles import SupervisorMode, key_digest
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig

REPLENISHER, TECHNICIAN = "246810", "135790"
KEYS = {"replenisher": key_digest(REPLENISHER), "technician": key_digest(TECHNICIAN)}
F8 = Fkey("F8")


def _desk(
    rig: Rig, tmp_path: Path, keys: dict[str, str] = KEYS
) -> tuple[SupervisorDesk, EscPosEmulator]:
    emulator = EscPosEmulator(paper_lines=2000, low_at=5)
    printer = EscPosPrinter(register(f"desk-{tmp_path.name}", emulator))
    printer.open()
    rig.terminal.devices.printer = printer
    counters = CashCounters(tmp_path / "cash.db")
    console = SupervisorConsole(rig.terminal, SupervisorMode(keys), counters)
    return SupervisorDesk(console, idle_timeout=120.0, lockout=300.0), emulator


def _shown(rig: Rig, screen: Screen) -> list[dict[str, Any]]:
    display = rig.terminal.display
    assert isinstance(display, RecordingDisplay)
    return [values for s, values in display.shown if s is screen]


def _events(rig: Rig) -> list[str]:
    """The journal's events, without the "in_service" each leave writes last."""
    return [e.event for e in rig.terminal.journal.tail(200) if e.event != "in_service"]


def _mode(rig: Rig) -> str:
    rows = list_terminals(rig.host.authoriser.conn)
    return str(next(t for t in rows if t["terminal_id"] == rig.terminal.config.terminal_id)["mode"])


def _no_key_anywhere(rig: Rig, *keys: str) -> None:
    for entry in rig.terminal.journal.tail(500):
        for key in keys:
            assert key not in entry.line(), entry.line()


def test_a_replenisher_balances_through_the_menu_with_a_difference(
    with_rig: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(rig: Rig) -> None:
        caplog.set_level(logging.DEBUG)
        desk, emulator = _desk(rig, tmp_path)
        terminal = rig.terminal
        cash = f"GL-CASH-{terminal.config.terminal_id}"
        expected = rig.balance(cash)
        # cassette 1 (20.00): one count over its capacity first (refused, asked again),
        # then 199 notes found where the dispenser says 200; cassette 2 (50.00): 100
        rig.pinpad.script(
            F8, Keys(REPLENISHER), Keys("1"),
            Keys("99999"), Keys("0"), Keys("0"),
            Keys("199"), Keys("0"), Keys("0"), Keys("150"),
            Keys("100"), Keys("1"), Keys("0"), Keys("80"),
            Keys(""),  # ENTER on the report
            # a second exchange that counts exactly the new load: balanced, no difference
            Keys("1"), Keys("150"), Keys("0"), Keys("0"), Keys("150"),
            Keys("80"), Keys("0"), Keys("0"), Keys("80"), Keys(""),
            Keys("0"),  # leave
        )  # fmt: skip
        assert await desk(terminal)
        assert rig.pinpad.pending() == 0
        menu = _shown(rig, Screen.SUPERVISOR_MENU)[0]
        assert menu["role"] == "replenisher"
        assert menu["options"].split("   ") == [
            "1 Replenish", "2 Balancing report", "3 Print journal", "6 Paper loaded", "0 Leave",
        ]  # fmt: skip
        counts = _shown(rig, Screen.SUPERVISOR_COUNT)
        assert "over its capacity 2000" in counts[3]["problem"]  # shown, then asked again
        assert counts[3]["what"] == "notes remaining" and counts[3]["cassette"] == "1"
        end = next(e for e in terminal.journal.tail(80) if e.event == "exchange_end")
        found = 199 * 2000 + 100 * 5000 + 1 * 5000  # the rejected 50.00 note counts too
        assert end.data["host_expected"] == expected
        assert end.data["found"] == found
        assert end.data["difference"] == found - expected  # exact, in minor units
        assert rig.balance(cash) == 150 * 2000 + 80 * 5000  # the new load, nothing absorbed
        events = _events(rig)
        assert events.index("supervisor_enter") < events.index("exchange_end")
        assert "report_printed" in events and events[-1] == "supervisor_exit"
        assert found != expected  # the demo's books and the count differ: reported
        diffs = [e for e in terminal.journal.tail(80) if e.event == "cash_difference"]
        assert [d.data["amount"] for d in diffs] == [found - expected]  # the second: none
        again = [e for e in terminal.journal.tail(80) if e.event == "exchange_end"][-1]
        assert again.data["difference"] == 0
        assert again.data["host_expected"] == again.data["found"] == 150 * 2000 + 80 * 5000
        report = _shown(rig, Screen.SUPERVISOR_REPORT)[-1]["report"]
        assert "DIFFERENCE" in report and emulator.receipts[-1][0] == "BALANCING REPORT"
        assert terminal.state is State.IDLE and terminal.supervisor is None
        assert _mode(rig) == "in_service"
        _no_key_anywhere(rig, REPLENISHER)
        assert REPLENISHER not in caplog.text

    with_rig(body)


def test_a_technician_sees_only_theirs_and_cannot_reach_the_exchange(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        rig.pinpad.script(
            F8, Keys(TECHNICIAN),
            Keys("1"),  # replenish: not the technician's
            Keys("4"), Keys(""),  # device status, ENTER
            Keys("5"), Keys(""),  # clear faults
            CANCEL,  # leaves too
        )  # fmt: skip
        assert await desk(rig.terminal)
        menus = _shown(rig, Screen.SUPERVISOR_MENU)
        assert menus[0]["options"].split("   ") == [
            "3 Print journal", "4 Device status", "5 Clear faults", "6 Paper loaded", "0 Leave",
        ]  # fmt: skip
        assert menus[1]["problem"] == "1: not a function of the technician role."
        assert "exchange_start" not in _events(rig)
        status = _shown(rig, Screen.SUPERVISOR_STATUS)[0]["status"].split(" | ")
        assert "dispenser: ok" in status and status[-1] == "host told"
        assert "faults_cleared" in _events(rig) and _events(rig)[-1] == "supervisor_exit"
        assert rig.terminal.state is State.IDLE

    with_rig(body)


def test_three_wrong_keys_lock_the_entry_and_nothing_of_them_is_kept(
    with_rig: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(rig: Rig) -> None:
        caplog.set_level(logging.DEBUG)
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        wrong = ("111111", "222222", "333333")
        rig.pinpad.script(F8, *(Keys(k) for k in wrong))
        assert await desk(terminal)
        assert terminal.supervisor is None and terminal.state is State.IDLE
        refused = [e for e in terminal.journal.tail(20) if e.event == "supervisor_key_refused"]
        assert [e.data["attempt"] for e in refused] == [1, 2, 3]
        locked = next(e for e in terminal.journal.tail(20) if e.event == "supervisor_locked")
        assert locked.data == {"failures": 3, "seconds": 300.0}
        assert _shown(rig, Screen.SUPERVISOR_LOCKED)
        assert "locked for 300 s" in caplog.text
        # the right key while locked: not even asked for
        rig.pinpad.script(F8, Keys(REPLENISHER))
        assert await desk(terminal)
        assert terminal.supervisor is None and rig.pinpad.pending() == 1
        rig.pinpad.clear_script()
        rig.clock.advance(301)
        rig.pinpad.script(F8, Keys(REPLENISHER), Keys("0"))
        assert await desk(terminal)
        assert _events(rig)[-2:] == ["supervisor_enter", "supervisor_exit"]
        _no_key_anywhere(rig, REPLENISHER, *wrong)
        for key in (REPLENISHER, *wrong):
            assert key not in caplog.text

    with_rig(body)


def test_an_idle_supervisor_is_logged_out_and_no_keys_means_no_f8(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        rig.pinpad.script(F8, Keys(TECHNICIAN))  # then nothing: the menu times out
        assert await desk(rig.terminal)
        timeout = next(e for e in rig.terminal.journal.tail(10) if e.event == "supervisor_timeout")
        assert timeout.data == {"role": "technician", "seconds": 120.0}
        assert _events(rig)[-1] == "supervisor_exit" and rig.terminal.state is State.IDLE
        assert _mode(rig) == "in_service"
        # entered some other way (card + PIN): the menu serves that role all the same
        rig.terminal.supervisor = "replenisher"
        rig.pinpad.script(Keys("0"))
        assert await desk(rig.terminal)
        assert rig.terminal.supervisor is None and _events(rig)[-1] == "supervisor_exit"
        # no [supervisor.keys]: F8 does nothing and is left where it was
        closed, _ = _desk(rig, tmp_path / "none", keys={})
        rig.pinpad.script(F8)
        assert not await closed(rig.terminal)
        assert rig.pinpad.pending() == 1 and rig.terminal.supervisor is None

    (tmp_path / "none").mkdir()
    with_rig(body)


def test_the_loop_serves_no_customer_in_supervisor_mode_and_the_next_one_after(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        card, _ = rig.cards["ALICE ARDEN"]
        rig.reader.insert(card)  # a customer's card is already there
        rig.pinpad.script(
            F8, Keys(REPLENISHER), Keys("3"), Keys("0"),  # print the journal, leave
            Pin("1234"), Fkey("F2"), Keys(""),  # then the customer: balance
        )  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.create_task(terminal.run(stop, poll=0.01, between=desk))
        for _ in range(400):
            if "session_end" in _events(rig):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await loop
        events = _events(rig)
        assert events.index("supervisor_exit") < events.index("card_read")
        assert "report_printed" in events  # the journal print-out
        ended = next(e for e in terminal.journal.tail(50) if e.event == "session_end")
        assert ended.data["outcome"] == "balance_shown"

    with_rig(body)


def test_cancel_during_the_counts_books_nothing(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        cash = f"GL-CASH-{rig.terminal.config.terminal_id}"
        before = rig.balance(cash)
        rig.pinpad.script(F8, Keys(REPLENISHER), Keys("1"), Keys("200"), CANCEL, Keys("0"))
        assert await desk(rig.terminal)
        abandoned = next(
            e for e in rig.terminal.journal.tail(20) if e.event == "exchange_abandoned"
        )
        assert abandoned.data == {"cassette": 1}
        assert "exchange_end" not in _events(rig) and rig.balance(cash) == before
        menu = _shown(rig, Screen.SUPERVISOR_MENU)[-1]
        assert menu["problem"] == "Exchange cancelled: nothing was booked."
        assert _mode(rig) == "in_service" and rig.terminal.state is State.IDLE

    with_rig(body)


def test_the_desk_keeps_the_counters_the_sessions_book_in(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        assert terminal.cash_counters is None
        assert await desk(terminal) is False  # no F8: the loop goes on to its customers
        counters = desk.console.counters
        assert terminal.cash_counters is counters
        loaded = {c.position: c.loaded for c in counters.cassettes()}
        assert loaded == {c.index: c.count for c in terminal.devices.dispenser.cassettes()}
        desk.close()
        assert terminal.cash_counters is None

    with_rig(body)
