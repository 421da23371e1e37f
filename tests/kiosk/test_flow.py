"""The flow customers know, on the session level (simulated devices, a real host)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from terminal.drivers.pinpad.sim import CANCEL, Fkey, Keys, Pin
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig


def test_an_amount_over_the_limit_is_declined_as_over_the_limit_not_as_notes(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        card, _ = rig.cards["CAROL CHO"]
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        rig.pinpad.script(Pin("2468"), Fkey("F1"), Keys("5000"), Keys("15"), CANCEL)
        rig.reader.insert(card)
        result = await rig.terminal.serve_one()
        assert result is not None and result.outcome == "cancelled"
        shown = [screen for screen, _ in display.shown]
        over = shown.index(Screen.AMOUNT_OVER_LIMIT)
        limit = display.shown[shown.index(Screen.ENTER_AMOUNT)][1]["limit"]
        assert display.shown[over][1] == {"limit": limit}
        assert "5000" not in str(limit)
        assert Screen.CANNOT_DISPENSE not in shown[: over + 1]
        # 15 is under the limit but no mix of 20s and 50s makes it: that one is the notes.
        assert Screen.CANNOT_DISPENSE in shown[over + 1 :]

    with_rig(body)
