"""The flow customers know, on the session level (simulated devices, a real host)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atm_common.money import format_minor
from terminal.drivers.pinpad.sim import Fkey, Keys, Pin
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig


def test_an_amount_over_the_limit_is_declined_for_the_limit_not_for_the_notes(
    with_rig: Callable[..., Any],
) -> None:
    """5000 when the menu said "up to 1000.00": the host's 61 names the cause (it used to
    be "This amount cannot be dispensed. Notes available: ..."); an amount within the
    limit that no mix of notes makes is still the notes' fault."""

    async def body(rig: Rig) -> None:
        card, _ = rig.cards["CAROL CHO"]
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        rig.pinpad.script(Pin("2468"), Fkey("F1"), Keys("15"), Keys("5000"))
        rig.reader.insert(card)
        result = await rig.terminal.serve_one()
        assert result is not None and result.outcome == "declined:61", result
        texts = display.texts()
        declined = [t for s, t in zip(display.shown, texts, strict=True) if s[0] is Screen.DECLINED]
        assert declined == ["The amount exceeds your limit."]
        notes = [s for s, _ in display.shown if s is Screen.CANNOT_DISPENSE]
        assert len(notes) == 1  # for the 15, not for the 5000

    with_rig(body)


def test_a_receipt_carries_time_terminal_site_card_stan_approval_amount_and_balance(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        card, account = rig.cards["CAROL CHO"]
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        rig.pinpad.script(Pin("2468"), Fkey("F1"), Keys("40"))
        rig.reader.insert(card)
        result = await rig.terminal.serve_one()
        assert result is not None and result.outcome == "dispensed", result
        screen, values = display.shown[-1]
        assert screen is Screen.RECEIPT
        lines = values["receipt"].split(" | ")
        now = rig.clock.now()
        assert lines[0].startswith(f"{now:%Y-%m-%d}")
        assert lines[1] == "Terminal ATM00001  Main Street branch"
        assert lines[2] == "Card 476173******0028"
        assert result.stan and result.auth_code
        assert f"STAN {result.stan}  Auth {result.auth_code}" in lines
        assert "Cash dispensed 40.00" in lines
        balance = rig.host.authoriser.ledger.balance(account).available
        assert f"Available balance {format_minor(balance)}" in lines

    with_rig(body)


def test_a_card_left_before_the_cash_is_retained_and_the_cash_never_presented(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        card, account = rig.cards["CAROL CHO"]
        before = rig.balance(account)
        rig.pinpad.script(Pin("2468"), Fkey("F1"), Keys("40"))
        rig.reader.script_take_card(False)
        rig.reader.insert(card)
        result = await rig.terminal.serve_one()
        assert result is not None and result.outcome == "card_retained", result
        assert result.card_retained and result.dispensed == 0
        assert rig.dispenser.handed_out_amount == 0
        assert rig.balance(account) == before  # reversed
        assert result.states[-5:] == [
            "dispensing",
            "card_before_cash",
            "card_retained",
            "receipt",
            "idle",
        ]
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        assert Screen.TAKE_CASH not in [s for s, _ in display.shown]

    with_rig(body)
