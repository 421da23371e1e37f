"""Crash recovery: kill the terminal after every record of a withdrawal (at each of the
journal's commit points and between them), and inside the device calls between them;
restart it on the same files and devices, and the customer's account is debited exactly
for the cash received.

The journal commits only at the points of no return (docs/durability.md): what was
recorded since the last commit is lost with the process, which these tests prove is
never something recovery needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sim.scenarios.scripts import WITHDRAW, Scenario
from sim.soak.crash import SimulatedCrash, crash_after, kill
from terminal.app import Terminal
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.journal import Entry
from tests.conftest import Rig

ALICE = "1000000001"
WITHDRAW_100 = Scenario(
    "w", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispensed", 10_000
)
FIRST_SESSION = "ATM00001-000001"  # the rig's first customer

# The points of no return: the records the journal commits (with all before them).
COMMIT_POINTS = frozenset({"authorisation_request", "dispensing", "stacked", "session_end"})

# Every record of a complete withdrawal, in order, and what a kill right after it must
# lead to: the recovery action (None: no recovery needed, because nothing of the session
# reached the disk or because it had ended) and what the customer ends up debited.
COMPLETE_WITHDRAWAL: list[tuple[str, str | None, int]] = [
    ("state", None, 0),  # card_inserted
    ("card_read", None, 0),
    ("state", None, 0),  # card_read
    ("pin_entered", None, 0),
    ("state", None, 0),  # pin_entered
    ("state", None, 0),  # pin_accepted
    ("menu", None, 0),
    ("state", None, 0),  # withdrawal_chosen
    ("amount_entered", None, 0),
    ("state", None, 0),  # amount_entered
    ("authorisation_request", "reversal", 0),  # commit: before the 0200 leaves
    ("authorisation", "reversal", 0),  # approved: undone
    ("state", "reversal", 0),  # approved
    ("dispensing", "reversal", 0),  # commit: before a note moves; none moved
    ("stacked", "reversal", 0),  # commit: notes in the stacker, retracted
    ("state", "reversal", 0),  # notes_stacked, not yet presented: retracted
    # the card comes back before the cash (docs/kiosk.md): still nothing presented
    ("card_returned", "reversal", 0),
    ("state", "reversal", 0),  # card_taken
    ("cash_taken", "complete", 10_000),  # the customer has the cash
    ("state", "complete", 10_000),  # cash_taken
    ("state", "complete", 10_000),  # done
    ("receipt", "complete", 10_000),
    ("state", "complete", 10_000),  # session_ended
    ("session_end", None, 10_000),  # commit: the end
]


def _steps() -> list[tuple[int, str, int, str | None, int]]:
    """(index, event, which occurrence of it, action, debited) for each record."""
    seen: dict[str, int] = {}
    steps = []
    for index, (event, action, debited) in enumerate(COMPLETE_WITHDRAWAL):
        seen[event] = seen.get(event, 0) + 1
        steps.append((index, event, seen[event], action, debited))
    return steps


async def _restart(rig: Rig) -> Terminal:
    await kill(rig.terminal)
    rig.pinpad.clear_script()  # the customer walked away from a dead machine
    old = rig.terminal
    new = Terminal(old.config, clock=rig.clock, devices=old.devices, display=old.display)
    assert new.start(), new.out_of_service_reason
    assert await new.ensure_signed_on()
    rig.terminal = new
    await new.saf.drain(new.host, force=True)
    return new


async def _crash_and_restart(
    rig: Rig, event: str, scenario: Scenario = WITHDRAW_100, count: int = 1
) -> Terminal:
    crash_after(rig.terminal.journal, event, count)
    with pytest.raises(SimulatedCrash):
        await rig.play(scenario)
    return await _restart(rig)


def _on_disk(terminal: Terminal, session: str) -> list[Entry]:
    """What the killed session left in the journal, before recovery wrote anything."""
    entries = terminal.journal.tail(1000, session=session)
    firsts = [i for i, e in enumerate(entries) if e.event == "recovered"]
    return entries[: firsts[0]] if firsts else entries


def test_a_complete_withdrawal_records_exactly_these_events(with_rig: Any) -> None:
    """The table the kill tests walk through is the real sequence, not a guess."""

    async def body(rig: Rig) -> None:
        result = await rig.play(WITHDRAW_100)
        assert result.outcome == "dispensed"
        events = [e.event for e in rig.terminal.journal.tail(1000, session=result.session_id)]
        assert events == [event for event, _, _ in COMPLETE_WITHDRAWAL]

    with_rig(body)


@pytest.mark.parametrize(
    ("index", "event", "count", "action", "debited"),
    _steps(),
    ids=[f"{i:02d}-{e}" for i, e, *_ in _steps()],
)
def test_kill_after_every_record(
    with_rig: Any, index: int, event: str, count: int, action: str | None, debited: int
) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        handed_before = rig.dispenser.handed_out_amount
        new = await _crash_and_restart(rig, event, count=count)
        # Exactly the records up to the last commit point survived the kill.
        committed = [i for i in range(index + 1) if COMPLETE_WITHDRAWAL[i][0] in COMMIT_POINTS]
        kept = committed[-1] + 1 if committed else 0
        expected = [e for e, _, _ in COMPLETE_WITHDRAWAL[:kept]]
        assert [e.event for e in _on_disk(new, FIRST_SESSION)] == expected
        recovered = [e for e in new.journal.tail(50) if e.event == "recovered"]
        if action is None:
            assert not recovered
        else:
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


def _crash_inside(rig: Rig, step: str) -> Callable[[], None]:
    """Kill the process inside a dispenser call, once the device has done its work."""
    dispenser = rig.dispenser
    original = getattr(dispenser, step)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise SimulatedCrash(f"killed inside {step}")

    setattr(dispenser, step, crashing)
    return lambda: delattr(dispenser, step)


@pytest.mark.parametrize(
    ("step", "action", "debited"),
    [
        # between the "dispensing" and "stacked" commits: notes in the stacker, unrecorded
        ("dispense", "reversal", 0),
        # between the "stacked" commit and the end: the customer took the notes
        ("present", "complete", 10_000),
    ],
)
def test_kill_inside_the_dispenser_between_commits(
    with_rig: Any, step: str, action: str, debited: int
) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        handed_before = rig.dispenser.handed_out_amount
        restore = _crash_inside(rig, step)
        with pytest.raises(SimulatedCrash):
            await rig.play(WITHDRAW_100)
        restore()
        new = await _restart(rig)
        recovered = [e for e in new.journal.tail(50) if e.event == "recovered"]
        assert recovered and recovered[-1].data["action"] == action
        assert rig.dispenser.handed_out_amount - handed_before == debited
        assert rig.balance(ALICE) == before - debited
        assert not rig.dispenser.notes_pending()
        assert new.saf.pending == 0

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


def test_kill_after_a_decline_reverses_nothing(with_rig: Any) -> None:
    """A decline is committed at once: a kill while the card is handed back finds it."""

    async def body(rig: Rig) -> None:
        _, bob = rig.cards["BOB BRANDT"]
        before = rig.balance(bob)
        too_much = Scenario("poor", "BOB BRANDT", [Pin("4321"), WITHDRAW, Keys("100")], "")
        new = await _crash_and_restart(rig, "declined", too_much)
        recovered = [e for e in new.journal.tail(50) if e.event == "recovered"]
        assert recovered and recovered[-1].data["action"] == "nothing_owed"
        assert recovered[-1].data["detail"] == "declined 51"
        assert not new.saf.entries()
        assert rig.balance(bob) == before

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
