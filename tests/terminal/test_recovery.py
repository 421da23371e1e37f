"""Crash recovery: kill the terminal at each step of a withdrawal, restart it on the same
files and devices, and the customer's account is debited exactly for the cash received."""

from __future__ import annotations

from typing import Any

import pytest

from sim.scenarios.scripts import WITHDRAW, Scenario
from sim.soak.crash import SimulatedCrash, crash_after, kill
from terminal.app import Terminal
from terminal.drivers.pinpad.sim import Keys, Pin
from tests.conftest import Rig

ALICE = "1000000001"
WITHDRAW_100 = Scenario(
    "w", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispensed", 10_000
)


async def _crash_and_restart(rig: Rig, event: str, scenario: Scenario = WITHDRAW_100) -> Terminal:
    crash_after(rig.terminal.journal, event)
    with pytest.raises(SimulatedCrash):
        await rig.play(scenario)
    await kill(rig.terminal)
    rig.pinpad.clear_script()  # the customer walked away from a dead machine
    old = rig.terminal
    new = Terminal(old.config, clock=rig.clock, devices=old.devices, display=old.display)
    assert new.start(), new.out_of_service_reason
    assert await new.ensure_signed_on()
    rig.terminal = new
    await new.saf.drain(new.host, force=True)
    return new


@pytest.mark.parametrize(
    ("event", "action", "debited"),
    [
        ("pin_entered", "nothing_owed", 0),
        ("authorisation_request", "reversal", 0),  # the host may never have seen it
        ("authorisation", "reversal", 0),  # approved: undone
        ("dispensing", "reversal", 0),  # no note moved
        ("stacked", "reversal", 0),  # notes in the stacker: retracted
        ("cash_taken", "complete", 10_000),  # the customer has the cash
    ],
)
def test_kill_at_each_step(with_rig: Any, event: str, action: str, debited: int) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        handed_before = rig.dispenser.handed_out_amount
        new = await _crash_and_restart(rig, event)
        recovered = [e for e in new.journal.tail(50) if e.event == "recovered"]
        assert recovered and recovered[-1].data["action"] == action
        assert new.saf.pending == 0
        assert rig.dispenser.handed_out_amount - handed_before == debited
        assert rig.balance(ALICE) == before - debited
        assert not rig.dispenser.notes_pending()
        # and the restarted terminal serves the next customer normally, with fresh STANs
        result = await rig.play(WITHDRAW_100)
        assert result.outcome == "dispensed"
        assert rig.balance(ALICE) == before - debited - 10_000

    with_rig(body)


def test_kill_after_a_partial_dispense_advises_what_was_taken(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        rig.dispenser.inject_jam(after_notes=2)
        scenario = Scenario(
            "jam", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("200")], "partial_dispense"
        )
        new = await _crash_and_restart(rig, "cash_taken", scenario)
        taken = rig.dispenser.handed_out_amount
        assert 0 < taken < 20_000
        recovered = [e for e in new.journal.tail(50) if e.event == "recovered"]
        assert recovered[-1].data["action"] == "advice"
        assert rig.balance(ALICE) == before - taken

    with_rig(body)


def test_restart_after_a_clean_session_changes_nothing(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.play(WITHDRAW_100)
        before = rig.balance(ALICE)
        await kill(rig.terminal)
        new = Terminal(rig.terminal.config, clock=rig.clock, devices=rig.terminal.devices)
        assert new.start()
        assert not [e for e in new.journal.tail(20) if e.event == "recovered"]
        assert new.saf.pending == 0
        assert rig.balance(ALICE) == before
        rig.terminal = new

    with_rig(body)
