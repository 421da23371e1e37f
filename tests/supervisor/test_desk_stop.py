"""A stop (SIGTERM) while supervisor mode is on at the kiosk: the desk reads the PIN pad in
short windows (terminal/supervisor/polling.py), sees the loop's stop within about a
second, leaves supervisor mode (0800/172, journaled with reason stop) and the loop ends.
Against a live host (real TCP, real SQLite); the menu waits in real time on the screen's
keys, as at a kiosk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from terminal.drivers.pinpad.base import ENTER, EntryOutcome, KeyEntry, PinPad, ScreenKeys
from terminal.drivers.pinpad.sim import Fkey, Keys
from terminal.supervisor import polling
from tests.conftest import Rig
from tests.supervisor.test_desk import REPLENISHER, _desk, _events, _mode

BOUND = 2.5  # s from the stop to the loop's end (one read window is 1 s)


async def _until(rig: Rig, event: str, turns: int = 300) -> None:
    for _ in range(turns):
        if event in _events(rig):
            return
        await asyncio.sleep(0.02)


def test_a_stop_while_the_menu_waits_leaves_supervisor_mode_and_tells_the_host(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        desk.idle_timeout = 6.0  # longer than the bound: only the stop can end it in time
        terminal = rig.terminal
        rig.pinpad.attach_screen(ScreenKeys(), lambda key: None)  # the menu waits for real
        rig.pinpad.script(Fkey("F8"), Keys(REPLENISHER))
        stop = asyncio.Event()
        desk.stop = stop
        started = time.monotonic()
        loop = asyncio.create_task(terminal.run(stop, poll=0.01, between=desk))
        await _until(rig, "supervisor_enter")
        assert terminal.supervisor == "replenisher" and _mode(rig) == "supervisor"
        await asyncio.sleep(0.3)  # the menu is waiting for a key (and lets this task run)
        stop.set()
        await asyncio.wait_for(loop, 10.0)
        # entered, 0.3 s, the stop seen within a read window, left: far under idle_timeout
        assert time.monotonic() - started < 1.0 + BOUND
        exit_row = [e for e in terminal.journal.tail(50) if e.event == "supervisor_exit"]
        assert [e.data for e in exit_row] == [{"role": "replenisher", "reason": "stop"}]
        assert "supervisor_timeout" not in _events(rig)
        assert terminal.supervisor is None and not desk.console.mode.active
        assert _mode(rig) == "in_service"  # the host took the 0800/172

    with_rig(body)


def test_a_stop_during_the_counts_abandons_the_exchange(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        desk, _ = _desk(rig, tmp_path)
        terminal = rig.terminal
        rig.pinpad.attach_screen(ScreenKeys(), lambda key: None)
        rig.pinpad.script(Fkey("F8"), Keys(REPLENISHER), Keys("1"), Keys("200"))
        stop = asyncio.Event()
        desk.stop = stop
        turn = asyncio.create_task(desk(terminal))
        await _until(rig, "exchange_start")
        await asyncio.sleep(0.3)  # the second count waits for a key
        stop.set()
        assert await asyncio.wait_for(turn, BOUND)
        abandoned = next(e for e in terminal.journal.tail(50) if e.event == "exchange_abandoned")
        assert abandoned.data == {"cassette": 1, "reason": "stop"}
        assert "exchange_end" not in _events(rig) and _events(rig)[-1] == "supervisor_exit"
        assert _mode(rig) == "in_service"

    with_rig(body)


class _Pad:
    """Answers one scripted window per read, reporting its presses as a pad does."""

    key_listener: Callable[[str], None] | None = None

    def __init__(self, windows: list[tuple[list[str], KeyEntry]]) -> None:
        self.windows = windows
        self.timeouts: list[float] = []

    def read_keys(self, *, max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
        self.timeouts.append(timeout)
        presses, entry = self.windows.pop(0)
        for key in presses:
            if self.key_listener is not None:
                self.key_listener(key)
        return entry


def test_a_digit_typed_as_a_window_ends_is_kept_for_the_enter_after_it() -> None:
    timeout = KeyEntry(EntryOutcome.TIMEOUT)
    pad = _Pad(
        [
            ([], timeout),
            (["4"], timeout),  # the digit, then the window runs out
            ([ENTER], KeyEntry(EntryOutcome.ENTERED, "")),  # ENTER in the next one
        ]
    )
    seen: list[str] = []
    pad.key_listener = seen.append  # the screen still hears every press

    class Clock:
        now = 0.0

        def monotonic(self) -> float:
            return self.now

    async def read() -> KeyEntry:
        return await polling.read_keys(
            cast(PinPad, pad), cast(Any, Clock()), max_digits=1, timeout=300.0,
            stop=asyncio.Event(),
        )  # fmt: skip

    entry = asyncio.run(read())
    assert entry == KeyEntry(EntryOutcome.ENTERED, "4")
    assert pad.timeouts == [polling.POLL] * 3 and seen == ["4", ENTER]
    assert pad.key_listener is not None and pad.key_listener == seen.append
