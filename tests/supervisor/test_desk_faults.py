"""Supervisor mode at the kiosk when something fails (terminal/supervisor/desk.py,
keyentry.py, the loop's guard in terminal/app.py): a PIN pad error during the key entry
does not stop the kiosk, another device's error stays on the menu, a `between` hook that
raises never ends the loop, the right key after wrong ones starts the count again.
Against a live host (real TCP, real SQLite), sim devices."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host_link.codec import Message
from host_link.codes import NetworkCode
from terminal.app import Terminal
from terminal.drivers.dispenser.base import Cassette
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.base import KeyEntry
from terminal.drivers.pinpad.sim import Fkey, Keys, Pin
from terminal.errors import DeviceFault
from terminal.fsm.customer import State
from terminal.supervisor.desk import REJECT_BIN, REMAINING, RETRACT_BIN
from terminal.ui import Screen
from tests.conftest import Rig
from tests.supervisor.test_desk import REPLENISHER, _desk, _events, _shown

F8 = Fkey("F8")


async def _until(rig: Rig, event: str, loop: asyncio.Task[None], turns: int = 400) -> None:
    for _ in range(turns):
        if event in _events(rig) or loop.done():
            return
        await asyncio.sleep(0.02)


def test_a_pin_pad_error_during_the_key_entry_does_not_stop_the_kiosk(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal, pinpad = rig.terminal, rig.pinpad
        real = pinpad._do_read_keys
        failed: list[bool] = []

        def read_keys(max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
            if not failed:  # the first read after F8: the pad fails
                failed.append(True)
                raise DeviceFault("pinpad", "keyboard does not answer", 0x31)
            return real(max_digits, timeout, function_keys)

        pinpad._do_read_keys = read_keys  # type: ignore[method-assign]
        card, _ = rig.cards["ALICE ARDEN"]
        pinpad.script(F8)
        stop = asyncio.Event()
        loop = asyncio.create_task(terminal.run(stop, poll=0.01, between=desk))
        await _until(rig, "supervisor_device_error", loop)
        # the kiosk goes on: the next customer is served
        pinpad.script(Pin("1234"), Fkey("F2"), Keys(""))
        rig.reader.insert(card)
        await _until(rig, "session_end", loop)
        stop.set()
        await loop  # raises here if the loop died
        error = next(e for e in terminal.journal.tail(50) if e.event == "supervisor_device_error")
        assert "keyboard does not answer" in error.data["error"]
        ended = next(e for e in terminal.journal.tail(50) if e.event == "session_end")
        assert ended.data["outcome"] == "balance_shown"
        assert terminal.supervisor is None and "supervisor_enter" not in _events(rig)

    with_rig(body)


def test_a_between_hook_that_raises_never_stops_the_loop(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        terminal = rig.terminal
        calls: list[int] = []

        async def between(t: Terminal) -> bool:
            calls.append(1)
            raise RuntimeError("a defect in the hook")  # on every turn

        card, _ = rig.cards["ALICE ARDEN"]
        rig.pinpad.script(Pin("1234"), Fkey("F2"), Keys(""))
        rig.reader.insert(card)
        stop = asyncio.Event()
        loop = asyncio.create_task(terminal.run(stop, poll=0.01, between=between))
        await _until(rig, "session_end", loop)
        stop.set()
        await loop
        assert len(calls) >= 2  # raised on every turn, journaled once
        failed = [e for e in terminal.journal.tail(50) if e.event == "between_failed"]
        assert [e.data["error"] for e in failed] == ["RuntimeError: a defect in the hook"]
        assert "session_end" in _events(rig)

    with_rig(body)


def test_a_jammed_dispenser_is_shown_on_the_menu_and_the_supervisor_stays(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal

        def jammed() -> list[Cassette]:
            raise DeviceFault("dispenser", "notes jammed in the transport", 0x12)

        rig.dispenser.cassettes = jammed  # type: ignore[method-assign]
        # replenish (the dispenser cannot say its cassettes), then device status, leave
        rig.pinpad.script(F8, Keys(REPLENISHER), Keys("1"), Keys("0"))
        assert await desk(terminal)
        assert rig.pinpad.pending() == 0  # the "0" was read by the menu, not left over
        menus = _shown(rig, Screen.SUPERVISOR_MENU)
        assert len(menus) == 2
        assert "dispenser: notes jammed in the transport" in menus[1]["problem"]
        events = _events(rig)
        assert events.index("supervisor_device_error") < events.index("supervisor_exit")
        assert "supervisor_timeout" not in events
        assert terminal.supervisor is None and "exchange_start" not in events

    with_rig(body)


def test_the_pin_pad_failing_at_the_menu_still_leaves_supervisor_mode(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal, pinpad = rig.terminal, rig.pinpad
        real = pinpad._do_read_keys
        reads: list[int] = []

        def read_keys(max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
            reads.append(1)
            if len(reads) == 2:  # the key is read, then the menu's read fails
                raise DeviceFault("pinpad", "keyboard does not answer", 0x31)
            return real(max_digits, timeout, function_keys)

        pinpad._do_read_keys = read_keys  # type: ignore[method-assign]
        pinpad.script(F8, Keys(REPLENISHER))
        assert await desk(terminal)
        events = _events(rig)
        assert events[-3:] == ["supervisor_enter", "supervisor_device_error", "supervisor_exit"]
        assert terminal.supervisor is None and not desk.console.mode.active

    with_rig(body)


def test_the_right_key_the_host_did_not_take_starts_the_wrong_key_count_again(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        real = desk.console.send

        async def send(code: str, data: str = "") -> Message:
            if code == NetworkCode.SUPERVISOR_ENTER:
                return {"39": "91"}  # the host did not take the 0800/171
            return await real(code, data)

        desk.console.send = send  # type: ignore[method-assign]
        rig.pinpad.script(F8, Keys("111111"), Keys("222222"), Keys(REPLENISHER), Keys("0"))
        assert await desk(terminal)
        assert desk.switch.failures == 0
        assert terminal.supervisor is None and terminal.state is State.IDLE
        # the next visit: one wrong key does not lock (two more would)
        rig.pinpad.script(F8, Keys("333333"), Keys(REPLENISHER), Keys("0"))
        assert await desk(terminal)
        assert "supervisor_locked" not in _events(rig)
        assert _events(rig)[-2:] == ["supervisor_enter", "supervisor_exit"]

    with_rig(body)


def test_the_bins_are_counted_once_per_denomination(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        dispenser = SimDispenser(rig.clock, cassettes=((2000, 200), (2000, 100), (5000, 100)))
        dispenser.open()
        terminal.devices.dispenser = dispenser  # two cassettes of 20.00 share the bins
        rig.pinpad.script(
            F8, Keys(REPLENISHER), Keys("1"),
            Keys("200"), Keys("3"), Keys("2"), Keys("200"),  # 20.00: the bins asked here
            Keys("100"), Keys("100"),  # the other 20.00: remaining and load only
            Keys("100"), Keys("0"), Keys("0"), Keys("100"),  # 50.00: its own bins
            Keys(""), Keys("0"),  # ENTER on the report, leave
        )  # fmt: skip
        assert await desk(terminal)
        assert rig.pinpad.pending() == 0
        asked = [(s["cassette"], s["what"]) for s in _shown(rig, Screen.SUPERVISOR_COUNT)]
        assert asked == [
            ("1", REMAINING), ("1", REJECT_BIN), ("1", RETRACT_BIN), ("1", "notes loaded"),
            ("2", REMAINING), ("2", "notes loaded"),
            ("3", REMAINING), ("3", REJECT_BIN), ("3", RETRACT_BIN), ("3", "notes loaded"),
        ]  # fmt: skip
        assert "reject bin" in REJECT_BIN and "counted once" in REJECT_BIN
        end = next(e for e in terminal.journal.tail(80) if e.event == "exchange_end")
        assert end.data["found"] == (200 + 3 + 2 + 100) * 2000 + 100 * 5000  # bins once
        assert terminal.supervisor is None

    with_rig(body)
