"""The customer flow as a table-driven state machine (``transitions``).

States are an Enum and every legal move is a row of :data:`TRANSITIONS`; asking for any
other move raises :class:`~terminal.errors.TransitionError`. The machine decides nothing
itself: the session controller (:mod:`terminal.session`) talks to devices and the host and
fires the trigger that names what happened. The path taken is kept for the journal.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from transitions import Machine, MachineError

from terminal.errors import TransitionError

log = logging.getLogger(__name__)


class State(enum.Enum):
    OUT_OF_SERVICE = "out_of_service"
    IDLE = "idle"
    READING_CARD = "reading_card"
    PIN_ENTRY = "pin_entry"
    VERIFYING_PIN = "verifying_pin"
    MENU = "menu"
    AMOUNT_ENTRY = "amount_entry"
    AUTHORISING = "authorising"
    DISPENSING = "dispensing"
    PRESENTING = "presenting"
    CASH_TAKEN = "cash_taken"
    RETRACTING = "retracting"
    BALANCE_SHOWN = "balance_shown"
    RETURNING_CARD = "returning_card"
    CARD_RETAINED = "card_retained"
    RECEIPT = "receipt"
    # cardless withdrawal, reserved on a phone
    CARDLESS_PHONE = "cardless_phone"
    CARDLESS_METHOD = "cardless_method"
    CARDLESS_CODE = "cardless_code"
    FACE_CAPTURE = "face_capture"
    VERIFYING_RESERVATION = "verifying_reservation"


S = State
# States where the customer is expected to act, each with a timeout.
CUSTOMER_WAITS = [S.PIN_ENTRY, S.MENU, S.AMOUNT_ENTRY, S.BALANCE_SHOWN]
CARDLESS_WAITS = [S.CARDLESS_PHONE, S.CARDLESS_METHOD, S.CARDLESS_CODE]
# A cardless session has no card to give back: it ends at the receipt from these states.
CARDLESS_ENDS = [
    *CARDLESS_WAITS,
    S.FACE_CAPTURE,
    S.VERIFYING_RESERVATION,
    S.AUTHORISING,
    S.DISPENSING,
    S.CASH_TAKEN,
    S.RETRACTING,
]
IN_SESSION = [s for s in State if s not in (S.OUT_OF_SERVICE, S.IDLE)]

# trigger, source(s), destination
TRANSITIONS: list[tuple[str, State | list[State], State]] = [
    ("go_in_service", S.OUT_OF_SERVICE, S.IDLE),
    ("card_inserted", S.IDLE, S.READING_CARD),
    ("card_read", S.READING_CARD, S.PIN_ENTRY),
    ("card_unreadable", S.READING_CARD, S.RETURNING_CARD),
    ("pin_entered", S.PIN_ENTRY, S.VERIFYING_PIN),
    ("pin_accepted", S.VERIFYING_PIN, S.MENU),
    ("pin_rejected", S.VERIFYING_PIN, S.PIN_ENTRY),
    ("pin_tries_exceeded", [S.VERIFYING_PIN, S.AUTHORISING], S.CARD_RETAINED),
    ("withdrawal_chosen", S.MENU, S.AMOUNT_ENTRY),
    ("balance_chosen", S.MENU, S.BALANCE_SHOWN),
    ("amount_entered", S.AMOUNT_ENTRY, S.AUTHORISING),
    ("amount_rejected", S.AMOUNT_ENTRY, S.AMOUNT_ENTRY),
    ("approved", S.AUTHORISING, S.DISPENSING),
    ("declined", [S.VERIFYING_PIN, S.AUTHORISING], S.RETURNING_CARD),
    ("host_unavailable", [S.VERIFYING_PIN, S.AUTHORISING], S.RETURNING_CARD),
    ("notes_stacked", S.DISPENSING, S.PRESENTING),
    ("dispense_failed", S.DISPENSING, S.RETURNING_CARD),
    ("cash_taken", S.PRESENTING, S.CASH_TAKEN),
    ("cash_not_taken", S.PRESENTING, S.RETRACTING),
    ("retracted", S.RETRACTING, S.RETURNING_CARD),
    ("done", [S.CASH_TAKEN, S.BALANCE_SHOWN], S.RETURNING_CARD),
    ("cancel", CUSTOMER_WAITS, S.RETURNING_CARD),
    ("timeout", CUSTOMER_WAITS, S.RETURNING_CARD),
    ("card_taken", S.RETURNING_CARD, S.RECEIPT),
    ("card_not_taken", S.RETURNING_CARD, S.CARD_RETAINED),
    ("card_captured", S.CARD_RETAINED, S.RECEIPT),
    ("session_ended", S.RECEIPT, S.IDLE),
    ("go_out_of_service", [S.IDLE, *IN_SESSION], S.OUT_OF_SERVICE),
    # cardless: phone number, collection method, code and/or face, then the shared path
    ("cardless_chosen", S.IDLE, S.CARDLESS_PHONE),
    ("phone_entered", S.CARDLESS_PHONE, S.CARDLESS_METHOD),
    ("code_chosen", S.CARDLESS_METHOD, S.CARDLESS_CODE),
    ("face_chosen", S.CARDLESS_METHOD, S.FACE_CAPTURE),
    ("code_entered", S.CARDLESS_CODE, S.VERIFYING_RESERVATION),
    ("code_entered_face_next", S.CARDLESS_CODE, S.FACE_CAPTURE),
    ("face_captured", S.FACE_CAPTURE, S.VERIFYING_RESERVATION),
    ("reservation_rejected_code", S.VERIFYING_RESERVATION, S.CARDLESS_CODE),
    ("reservation_rejected_face", S.VERIFYING_RESERVATION, S.FACE_CAPTURE),
    ("reservation_confirmed", S.VERIFYING_RESERVATION, S.AUTHORISING),
    ("cardless_ended", CARDLESS_ENDS, S.RECEIPT),
]


class CustomerMachine:
    """The model the ``transitions`` machine drives; ``path`` records every state entered."""

    state: State

    def __init__(self, on_enter: Callable[[State, State, str], None] | None = None) -> None:
        self.path: list[State] = []
        self._on_enter = on_enter
        self._machine = Machine(
            model=self,
            states=State,
            transitions=[{"trigger": t, "source": src, "dest": dst} for t, src, dst in TRANSITIONS],
            initial=State.OUT_OF_SERVICE,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            after_state_change="_entered",
            send_event=True,
        )

    def fire(self, trigger: str) -> State:
        """Fire ``trigger``; raises TransitionError for a move the table does not allow."""
        try:
            method: Callable[[], Any] = getattr(self, trigger)
        except AttributeError:
            raise TransitionError(f"no trigger named {trigger!r}") from None
        before = self.state
        try:
            method()
        except MachineError as exc:
            raise TransitionError(f"{trigger!r} is not allowed in state {before.value}") from exc
        return self.state

    def allowed(self) -> list[str]:
        """Triggers the table allows from the current state."""
        return sorted(t for t, src, _ in TRANSITIONS if self.state in _as_list(src))

    def _entered(self, event: Any) -> None:
        source: State = (
            event.transition.source
            if isinstance(event.transition.source, State)
            else State[event.transition.source]
        )
        self.path.append(self.state)
        log.debug("%s -> %s on %s", source.value, self.state.value, event.event.name)
        if self._on_enter is not None:
            self._on_enter(source, self.state, event.event.name)


def _as_list(src: State | list[State]) -> list[State]:
    return src if isinstance(src, list) else [src]


def mermaid() -> str:
    """The state diagram in Mermaid syntax, straight from the transition table."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.OUT_OF_SERVICE.name}"]
    for trigger, sources, dest in TRANSITIONS:
        for src in _as_list(sources):
            lines.append(f"    {src.name} --> {dest.name}: {trigger}")
    return "\n".join(lines) + "\n"
