"""``atm run --sim``: what a field engineer types at the prompt reaches the real session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from terminal.cli.interactive import parse_inputs, serve_prompted
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Keys, Pin
from tests.conftest import Rig


def test_inputs_parse_into_pin_pad_entries_and_refusals() -> None:
    entries, take_cash, take_card = parse_inputs("pin 1234, F1, 100, enter, leave cash")
    # Script entries have no equality (a Pin must not be compared or shown): compare reprs.
    assert [type(e) for e in entries] == [Pin, Fkey, Keys, Keys]
    assert list(map(repr, entries)) == list(
        map(repr, [Pin("0000"), Fkey("F1"), Keys("100"), Keys("")])
    )
    assert (take_cash, take_card) == (False, True)
    entries, take_cash, take_card = parse_inputs(" cancel ,, wait, leave card ")
    assert entries == [CANCEL, NO_INPUT]  # the signals are singletons
    assert (take_cash, take_card) == (True, False)


@pytest.mark.parametrize("text", ["pin 1234, F9", "pin 1234, withdraw", "12a"])
def test_an_input_it_cannot_read_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="unknown input"):
        parse_inputs(text)


def test_a_prompted_withdrawal_debits_and_leftover_keys_do_not_reach_the_next_customer(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        card, account = rig.cards["ALICE ARDEN"]
        before = rig.balance(account)
        # Two keys too many: the session never asks for them.
        result = await serve_prompted(
            rig.terminal, card.pan, card.expiry, "pin 1234, F1, 100, 55, enter"
        )
        assert result is not None, rig.terminal.out_of_service_reason
        assert (result.outcome, result.dispensed) == ("dispensed", 10_000)
        assert rig.balance(account) == before - 10_000
        assert rig.pinpad.pending() == 0
        with pytest.raises(ValueError, match="unknown input 'F12'"):
            await serve_prompted(rig.terminal, card.pan, card.expiry, "pin 1234, F12")
        assert rig.pinpad.pending() == 0  # nothing was loaded for a line it could not read
        assert rig.reader.card_present is False
        # A refusal the session never reached (wrong PIN, then CANCEL) is not kept either.
        declined = await serve_prompted(
            rig.terminal, card.pan, card.expiry, "pin 1111, cancel, leave cash"
        )
        assert declined is not None and declined.dispensed == 0
        again = await serve_prompted(rig.terminal, card.pan, card.expiry, "pin 1234, F1, 20")
        assert again is not None and again.outcome == "dispensed", again  # cash taken this time
        assert rig.dispenser.retracted_amount == 0

    with_rig(body)
