"""The flow customers know, on the session level (simulated devices, a real host)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from atm_common.face.verify import FaceTemplate
from atm_common.money import format_minor
from sim.host.cardless.phone import PhoneBank
from terminal.cli.interactive import serve_prompted
from terminal.drivers.camera.sim import SimCamera
from terminal.drivers.pinpad.sim import Fkey, Keys, Pin
from terminal.ui import RecordingDisplay, Screen
from tests.cardless.conftest import template  # noqa: F401  (the shared face-template fixture)
from tests.cardless.helpers import FRANK_DEBIT, FRANK_PHONE, face, reserve
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


def test_atm_run_sim_collects_by_face_with_a_chosen_photo(
    with_rig: Callable[..., Any],
    template: Callable[[str], FaceTemplate],  # noqa: F811
) -> None:
    """``face PHOTO`` at the ``atm run --sim`` prompt: the sim camera sees that person
    (moving a little, so the liveness check passes); it used to end face_not_captured."""
    probe = template("obama2.jpg")

    async def body(rig: Rig) -> None:
        reservation = reserve(
            PhoneBank(rig.host.authoriser.cardless), probe, amount=4_000, method="face"
        )
        before = rig.host.authoriser.ledger.balance(FRANK_DEBIT).ledger
        photo = face("obama2.jpg")
        inputs = f"{FRANK_PHONE.lstrip('+')}, F2, face {photo}"
        result = await serve_prompted(rig.terminal, "cardless", "", inputs)
        assert result is not None, rig.terminal.out_of_service_reason
        assert (result.response_code, result.dispensed) == ("00", 4_000), result
        assert rig.host.authoriser.ledger.balance(FRANK_DEBIT).ledger < before - 4_000
        assert reservation["reservation_id"]
        camera = rig.terminal.devices.camera
        assert isinstance(camera, SimCamera) and "synthetic" in repr(camera)  # gone again
        with pytest.raises(ValueError, match=r"face no-such-photo\.jpg: .*cannot read"):
            await serve_prompted(
                rig.terminal, "cardless", "", "4915100000006, F2, face no-such-photo.jpg"
            )

    with_rig(body)
