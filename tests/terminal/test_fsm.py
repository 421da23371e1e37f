from __future__ import annotations

from pathlib import Path

import pytest

from terminal.errors import TransitionError
from terminal.fsm.customer import (
    CARDLESS_WAITS,
    CUSTOMER_WAITS,
    TRANSITIONS,
    CustomerMachine,
    State,
    mermaid,
)
from terminal.fsm.diagram import graphviz_available, write_diagram


def test_starts_out_of_service_and_records_path() -> None:
    machine = CustomerMachine()
    assert machine.state is State.OUT_OF_SERVICE
    for trigger in ("go_in_service", "card_inserted", "card_read", "pin_entered", "pin_accepted"):
        machine.fire(trigger)
    assert machine.state is State.MENU
    assert machine.path == [
        State.IDLE,
        State.READING_CARD,
        State.PIN_ENTRY,
        State.VERIFYING_PIN,
        State.MENU,
    ]


def test_illegal_move_raises_and_leaves_state() -> None:
    machine = CustomerMachine()
    machine.fire("go_in_service")
    with pytest.raises(TransitionError, match="'approved' is not allowed in state idle"):
        machine.fire("approved")
    assert machine.state is State.IDLE
    with pytest.raises(TransitionError, match="no trigger named"):
        machine.fire("teleport")


def test_every_customer_wait_can_time_out_and_cancel() -> None:
    sources: dict[str, set[State]] = {t: set() for t in ("timeout", "cancel")}
    for row in TRANSITIONS:
        if row.trigger in sources:
            sources[row.trigger] |= set(row.sources)
    assert sources["timeout"] == {*CUSTOMER_WAITS, *CARDLESS_WAITS}
    waiting = {State.FACE_CAPTURE, State.AWAITING_APPROVAL}  # no timeout: the host's clock
    assert sources["cancel"] == {*CUSTOMER_WAITS, *CARDLESS_WAITS, *waiting}


def test_every_state_is_reachable_and_can_leave() -> None:
    reachable = {State.OUT_OF_SERVICE}
    changed = True
    while changed:
        changed = False
        for row in TRANSITIONS:
            if any(s in reachable for s in row.sources) and row.dest not in reachable:
                reachable.add(row.dest)
                changed = True
    assert reachable == set(State)
    leaving = {s for row in TRANSITIONS for s in row.sources}
    assert leaving == set(State)


def test_no_trigger_from_one_state_has_two_open_rows() -> None:
    """Where rows share a trigger and a source, guards make the choice unambiguous."""
    for has_card in (True, False):
        seen: dict[tuple[str, State], State] = {}
        for row in TRANSITIONS:
            if row.guard is not None and not row.guard.holds(has_card):
                continue
            for src in row.sources:
                assert (row.trigger, src) not in seen, (row, has_card)
                seen[(row.trigger, src)] = row.dest


def _run(machine: CustomerMachine, *triggers: str) -> None:
    for trigger in triggers:
        machine.fire(trigger)


CARDLESS_TO_AUTHORISING = (
    "go_in_service",
    "cardless_chosen",
    "phone_entered",
    "code_chosen",
    "code_entered",
    "reservation_confirmed",
)
CARD_TO_AUTHORISING = (
    "go_in_service",
    "card_inserted",
    "card_read",
    "pin_entered",
    "pin_accepted",
    "withdrawal_chosen",
    "amount_entered",
)


@pytest.mark.parametrize(
    "ending",
    [
        ("declined",),
        ("host_unavailable",),
        ("approved", "dispense_failed"),
    ],
)
def test_the_table_alone_decides_card_and_cardless_endings(ending: tuple[str, ...]) -> None:
    """The same trigger on the shared cash path leads a card session back to the card
    reader and a cardless one (no card to give back) straight to the receipt."""
    card = CustomerMachine()
    _run(card, *CARD_TO_AUTHORISING, *ending)
    assert card.has_card and card.state is State.RETURNING_CARD
    cardless = CustomerMachine()
    _run(cardless, *CARDLESS_TO_AUTHORISING, *ending)
    assert not cardless.has_card and cardless.state is State.RECEIPT
    _run(cardless, "session_ended")
    assert cardless.state is State.IDLE


@pytest.mark.parametrize("cash", [("cash_not_taken", "retracted"), ("cash_taken", "done")])
def test_the_card_comes_back_before_the_cash(cash: tuple[str, ...]) -> None:
    """Notes stacked: a card session returns the card first, then presents the cash; a
    cardless one presents at once. Either ends at the receipt once the cash is settled."""
    card = CustomerMachine()
    _run(card, *CARD_TO_AUTHORISING, "approved", "notes_stacked")
    assert card.state is State.CARD_BEFORE_CASH
    assert "cash_taken" not in card.allowed()
    _run(card, "card_taken", *cash)
    assert card.state is State.RECEIPT
    cardless = CustomerMachine()
    _run(cardless, *CARDLESS_TO_AUTHORISING, "approved", "notes_stacked", *cash)
    assert cardless.state is State.RECEIPT


def test_a_card_left_before_the_cash_is_retained_and_no_cash_presented() -> None:
    card = CustomerMachine()
    _run(card, *CARD_TO_AUTHORISING, "approved", "notes_stacked", "card_not_taken")
    assert card.state is State.CARD_RETAINED
    _run(card, "card_captured", "session_ended")
    assert card.state is State.IDLE


def test_a_cardless_session_cannot_reach_the_card_reader() -> None:
    machine = CustomerMachine()
    _run(machine, *CARDLESS_TO_AUTHORISING)
    assert "pin_tries_exceeded" not in machine.allowed()
    assert {"approved", "declined", "host_unavailable"} <= set(machine.allowed())
    with pytest.raises(
        TransitionError,
        match="'pin_tries_exceeded' is not allowed in state authorising without a card",
    ):
        machine.fire("pin_tries_exceeded")
    assert machine.state is State.AUTHORISING
    with pytest.raises(TransitionError, match="'card_taken' is not allowed"):
        machine.fire("card_taken")


def test_the_next_session_starts_afresh() -> None:
    """``has_card`` follows the trigger that began the session in progress."""
    machine = CustomerMachine()
    _run(machine, *CARDLESS_TO_AUTHORISING, "declined", "session_ended")
    _run(machine, "card_inserted", "card_read", "pin_entered", "declined")
    assert machine.has_card and machine.state is State.RETURNING_CARD


def test_on_enter_callback_sees_source_and_trigger() -> None:
    seen: list[tuple[State, State, str]] = []
    machine = CustomerMachine(lambda a, b, t: seen.append((a, b, t)))
    machine.fire("go_in_service")
    machine.fire("go_out_of_service")
    assert seen == [
        (State.OUT_OF_SERVICE, State.IDLE, "go_in_service"),
        (State.IDLE, State.OUT_OF_SERVICE, "go_out_of_service"),
    ]


def test_allowed_lists_table_triggers() -> None:
    machine = CustomerMachine()
    assert machine.allowed() == ["go_in_service"]


def test_allowed_honours_guards() -> None:
    card = CustomerMachine()
    _run(card, *CARD_TO_AUTHORISING)
    assert card.allowed() == [
        "approval_pending",
        "approved",
        "declined",
        "go_out_of_service",
        "host_unavailable",
        "pin_tries_exceeded",
    ]
    cardless = CustomerMachine()
    _run(cardless, *CARDLESS_TO_AUTHORISING)
    assert cardless.allowed() == ["approved", "declined", "go_out_of_service", "host_unavailable"]


def test_mermaid_has_every_transition() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2")
    assert "PRESENTING --> RETRACTING: cash_not_taken" in text
    assert "VERIFYING_PIN --> CARD_RETAINED: pin_tries_exceeded [card]" in text
    edges = text.count(" --> ") - 1  # less the initial [*] edge
    assert edges == sum(len(row.sources) for row in TRANSITIONS)


def test_mermaid_draws_the_cardless_path() -> None:
    """The diagram is the table: the cardless path and its guarded endings are in it."""
    lines = set(mermaid().splitlines())
    for edge in (
        "IDLE --> CARDLESS_PHONE: cardless_chosen",
        "CARDLESS_PHONE --> CARDLESS_METHOD: phone_entered",
        "CARDLESS_CODE --> VERIFYING_RESERVATION: code_entered",
        "FACE_CAPTURE --> VERIFYING_RESERVATION: face_captured",
        "VERIFYING_RESERVATION --> AUTHORISING: reservation_confirmed",
        "VERIFYING_RESERVATION --> RECEIPT: declined [no card]",
        "AUTHORISING --> RECEIPT: declined [no card]",
        "AUTHORISING --> RECEIPT: host_unavailable [no card]",
        "AUTHORISING --> RETURNING_CARD: declined [card]",
        "DISPENSING --> RECEIPT: dispense_failed [no card]",
        "RETRACTING --> RECEIPT: retracted",
        "CASH_TAKEN --> RECEIPT: done",
        "DISPENSING --> CARD_BEFORE_CASH: notes_stacked [card]",
        "DISPENSING --> PRESENTING: notes_stacked [no card]",
        "CARD_BEFORE_CASH --> PRESENTING: card_taken",
        "CARDLESS_PHONE --> RECEIPT: cancel",
    ):
        assert f"    {edge}" in lines, edge
    assert "cardless_ended" not in mermaid()  # no catch-all ending any more
    # ... and a move the diagram does not draw still raises
    machine = CustomerMachine()
    _run(machine, "go_in_service", "cardless_chosen")
    assert "CARDLESS_PHONE --> AUTHORISING" not in mermaid()
    with pytest.raises(TransitionError, match="'approved' is not allowed in state cardless_phone"):
        machine.fire("approved")
    assert machine.state is State.CARDLESS_PHONE


def test_write_mermaid_markdown(tmp_path: Path) -> None:
    (path,) = write_diagram(tmp_path / "fsm.md")
    assert path.read_text().startswith("```mermaid\nstateDiagram-v2")


def test_write_svg_with_graphviz(tmp_path: Path) -> None:
    assert graphviz_available(), "make test installs Debian graphviz and the graphviz package"
    paths = write_diagram(tmp_path / "fsm.svg")
    assert paths[0].suffix == ".mmd"
    svg = paths[1].read_text()
    assert "<svg" in svg and "PRESENTING" in svg and "VERIFYING_RESERVATION" in svg
