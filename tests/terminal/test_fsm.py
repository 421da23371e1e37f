from __future__ import annotations

from pathlib import Path

import pytest

from terminal.errors import TransitionError
from terminal.fsm.customer import CUSTOMER_WAITS, TRANSITIONS, CustomerMachine, State, mermaid
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
    sources = {t: [] for t in ("timeout", "cancel")}
    for trigger, src, _ in TRANSITIONS:
        if trigger in sources:
            sources[trigger] = list(src) if isinstance(src, list) else [src]
    assert set(sources["timeout"]) == set(CUSTOMER_WAITS)
    assert set(sources["cancel"]) == set(CUSTOMER_WAITS)


def test_every_state_is_reachable_and_can_leave() -> None:
    reachable = {State.OUT_OF_SERVICE}
    changed = True
    while changed:
        changed = False
        for _, src, dst in TRANSITIONS:
            srcs = src if isinstance(src, list) else [src]
            if any(s in reachable for s in srcs) and dst not in reachable:
                reachable.add(dst)
                changed = True
    assert reachable == set(State)
    leaving = {s for _, src, _ in TRANSITIONS for s in (src if isinstance(src, list) else [src])}
    assert leaving == set(State)


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


def test_mermaid_has_every_transition() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2")
    assert "PRESENTING --> RETRACTING: cash_not_taken" in text
    assert "VERIFYING_PIN --> CARD_RETAINED: pin_tries_exceeded" in text


def test_write_mermaid_markdown(tmp_path: Path) -> None:
    (path,) = write_diagram(tmp_path / "fsm.md")
    assert path.read_text().startswith("```mermaid\nstateDiagram-v2")


def test_write_svg_with_graphviz(tmp_path: Path) -> None:
    assert graphviz_available(), "make test installs Debian graphviz and the graphviz package"
    paths = write_diagram(tmp_path / "fsm.svg")
    assert paths[0].suffix == ".mmd"
    svg = paths[1].read_text()
    assert "<svg" in svg and "PRESENTING" in svg
