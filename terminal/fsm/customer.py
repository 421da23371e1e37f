"""The customer flow as a table-driven state machine (``transitions``).

States are an Enum and every legal move is a row of :data:`TRANSITIONS`; asking for any
other move raises :class:`~terminal.errors.TransitionError`. The machine decides nothing
itself: the session controllers (:mod:`terminal.session`) talk to devices and the host and
fire the trigger that names what happened. The path taken is kept for the journal.

The card and cardless sessions share the cash path (authorising to retracting) and fire
the same triggers on it; where the two go different ways afterwards (back to the card
reader, or with no card straight to the receipt) the row carries a :class:`Guard`, so the
table, and the diagram drawn from it, decides every path: no session rewrites a trigger.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

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
    CARD_BEFORE_CASH = "card_before_cash"  # notes stacked; the card comes back first
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
    # corporate cards: the role/department pair, then the fund account
    ROLE_CHOICE = "role_choice"
    ACCOUNT_CHOICE = "account_choice"
    # joint accounts: the co-owner's personal code, and another co-owner's approval
    JOINT_CODE = "joint_code"
    AWAITING_APPROVAL = "awaiting_approval"
    # binding the account to a payment app: the QR code on the screen
    BINDING = "binding"
    BINDING_QR = "binding_qr"


S = State
# States where the customer is expected to act, each with a timeout.
CUSTOMER_WAITS = [S.PIN_ENTRY, S.MENU, S.AMOUNT_ENTRY, S.BALANCE_SHOWN, S.JOINT_CODE]
CUSTOMER_WAITS += [S.ROLE_CHOICE, S.ACCOUNT_CHOICE]  # corporate cards
CARDLESS_WAITS = [S.CARDLESS_PHONE, S.CARDLESS_METHOD, S.CARDLESS_CODE]
IN_SESSION = [s for s in State if s not in (S.OUT_OF_SERVICE, S.IDLE)]


class Guard(enum.Enum):
    """Which customer a row is for, where the card and cardless paths share a state.

    Both kinds of session pass through authorising, dispensing, presenting and
    retracting; from there a card session goes on to give the card back and a cardless
    one, having none, goes straight to the receipt. The guard is the model's ``has_card``
    flag, set by the trigger that began the session (:data:`SESSION_STARTS`).
    """

    CARD = "card"
    NO_CARD = "no card"

    def holds(self, has_card: bool) -> bool:
        return has_card if self is Guard.CARD else not has_card


CARD, NO_CARD = Guard.CARD, Guard.NO_CARD
# The triggers that begin a session, and whether the customer has a card in the reader.
SESSION_STARTS = {"card_inserted": True, "cardless_chosen": False}


class Row(NamedTuple):
    """One legal move: ``trigger`` from any of ``source`` to ``dest``, if ``guard`` holds."""

    trigger: str
    source: State | list[State]
    dest: State
    guard: Guard | None = None

    @property
    def sources(self) -> list[State]:
        return _as_list(self.source)

    def label(self) -> str:
        """The edge's name in a diagram: the trigger, and its guard in brackets."""
        return self.trigger if self.guard is None else f"{self.trigger} [{self.guard.value}]"


TRANSITIONS: list[Row] = [
    Row("go_in_service", S.OUT_OF_SERVICE, S.IDLE),
    Row("card_inserted", S.IDLE, S.READING_CARD),
    Row("card_read", S.READING_CARD, S.PIN_ENTRY),
    Row("card_unreadable", S.READING_CARD, S.RETURNING_CARD),
    Row("pin_entered", S.PIN_ENTRY, S.VERIFYING_PIN),
    Row("pin_accepted", S.VERIFYING_PIN, S.MENU),
    Row("pin_rejected", S.VERIFYING_PIN, S.PIN_ENTRY),
    Row("pin_tries_exceeded", [S.VERIFYING_PIN, S.AUTHORISING], S.CARD_RETAINED, CARD),
    Row("withdrawal_chosen", S.MENU, S.AMOUNT_ENTRY),
    Row("balance_chosen", S.MENU, S.BALANCE_SHOWN),
    Row("amount_entered", S.AMOUNT_ENTRY, S.AUTHORISING),
    Row("amount_rejected", S.AMOUNT_ENTRY, S.AMOUNT_ENTRY),
    Row("approved", S.AUTHORISING, S.DISPENSING),
    Row("declined", [S.VERIFYING_PIN, S.AUTHORISING], S.RETURNING_CARD, CARD),
    Row("declined", [S.VERIFYING_RESERVATION, S.AUTHORISING], S.RECEIPT, NO_CARD),
    Row("host_unavailable", [S.VERIFYING_PIN, S.AUTHORISING], S.RETURNING_CARD, CARD),
    Row("host_unavailable", [S.VERIFYING_RESERVATION, S.AUTHORISING], S.RECEIPT, NO_CARD),
    # The card comes back before the cash: a customer walks off with what they get last.
    Row("notes_stacked", S.DISPENSING, S.CARD_BEFORE_CASH, CARD),
    Row("notes_stacked", S.DISPENSING, S.PRESENTING, NO_CARD),
    Row("card_taken", S.CARD_BEFORE_CASH, S.PRESENTING),
    Row("card_not_taken", S.CARD_BEFORE_CASH, S.CARD_RETAINED),
    Row("dispense_failed", S.DISPENSING, S.RETURNING_CARD, CARD),
    Row("dispense_failed", S.DISPENSING, S.RECEIPT, NO_CARD),
    Row("cash_taken", S.PRESENTING, S.CASH_TAKEN),
    Row("cash_not_taken", S.PRESENTING, S.RETRACTING),
    Row("retracted", S.RETRACTING, S.RECEIPT),  # any card went back before the cash
    Row("done", S.BALANCE_SHOWN, S.RETURNING_CARD, CARD),
    Row("done", S.CASH_TAKEN, S.RECEIPT),
    Row("cancel", CUSTOMER_WAITS, S.RETURNING_CARD),
    Row("timeout", CUSTOMER_WAITS, S.RETURNING_CARD),
    Row("card_taken", S.RETURNING_CARD, S.RECEIPT),
    Row("card_not_taken", S.RETURNING_CARD, S.CARD_RETAINED),
    Row("card_captured", S.CARD_RETAINED, S.RECEIPT),
    Row("session_ended", S.RECEIPT, S.IDLE),
    Row("go_out_of_service", [S.IDLE, *IN_SESSION], S.OUT_OF_SERVICE),
    # cardless: phone number, collection method, code and/or face, then the shared cash
    # path (the guarded rows above); with no card to give back it ends at the receipt.
    Row("cardless_chosen", S.IDLE, S.CARDLESS_PHONE),
    Row("phone_entered", S.CARDLESS_PHONE, S.CARDLESS_METHOD),
    Row("code_chosen", S.CARDLESS_METHOD, S.CARDLESS_CODE),
    Row("face_chosen", S.CARDLESS_METHOD, S.FACE_CAPTURE),
    Row("code_entered", S.CARDLESS_CODE, S.VERIFYING_RESERVATION),
    Row("code_entered_face_next", S.CARDLESS_CODE, S.FACE_CAPTURE),
    Row("face_captured", S.FACE_CAPTURE, S.VERIFYING_RESERVATION),
    Row("reservation_rejected_code", S.VERIFYING_RESERVATION, S.CARDLESS_CODE),
    Row("reservation_rejected_face", S.VERIFYING_RESERVATION, S.FACE_CAPTURE),
    Row("reservation_confirmed", S.VERIFYING_RESERVATION, S.AUTHORISING),
    Row("cancel", [*CARDLESS_WAITS, S.FACE_CAPTURE], S.RECEIPT),
    Row("timeout", CARDLESS_WAITS, S.RECEIPT),
    # corporate cards (docs/enterprise.md): the host offers role/department pairs after the
    # PIN; the chosen one opens a menu of what it permits, then the fund account is chosen
    Row("roles_offered", S.VERIFYING_PIN, S.ROLE_CHOICE),
    Row("role_chosen", S.ROLE_CHOICE, S.MENU),
    Row("account_choice", S.MENU, S.ACCOUNT_CHOICE),
    Row("withdrawal_chosen", S.ACCOUNT_CHOICE, S.AMOUNT_ENTRY),
    Row("balance_chosen", S.ACCOUNT_CHOICE, S.BALANCE_SHOWN),
    Row("declined", [S.ROLE_CHOICE, S.MENU, S.ACCOUNT_CHOICE], S.RETURNING_CARD, CARD),
    Row("host_unavailable", [S.ROLE_CHOICE, S.ACCOUNT_CHOICE], S.RETURNING_CARD, CARD),
    # joint accounts (docs/joint-accounts.md): the personal code typed as a second PIN,
    # then, for a withdrawal or a balance, the wait for another co-owner's approval
    Row("personal_code_required", S.VERIFYING_PIN, S.JOINT_CODE),
    Row("personal_code_entered", S.JOINT_CODE, S.VERIFYING_PIN),
    Row("cancel", S.AWAITING_APPROVAL, S.RETURNING_CARD),  # the approval is cancelled too
    Row("approval_pending", [S.AUTHORISING, S.BALANCE_SHOWN], S.AWAITING_APPROVAL, CARD),
    Row("co_owner_approved", S.AWAITING_APPROVAL, S.AUTHORISING),
    Row("balance_approved", S.AWAITING_APPROVAL, S.BALANCE_SHOWN),
    Row("declined", [S.BALANCE_SHOWN, S.AWAITING_APPROVAL], S.RETURNING_CARD, CARD),
    Row("host_unavailable", [S.BALANCE_SHOWN, S.AWAITING_APPROVAL], S.RETURNING_CARD, CARD),
    # payment-app binding: ask the host, show the QR code, wait for the outcome
    Row("bind_chosen", S.MENU, S.BINDING),
    Row("binding_shown", S.BINDING, S.BINDING_QR),
    Row("bound", S.BINDING_QR, S.RETURNING_CARD),
    Row("binding_failed", [S.BINDING, S.BINDING_QR], S.RETURNING_CARD),
    Row("declined", [S.BINDING, S.BINDING_QR], S.RETURNING_CARD, CARD),
    Row("host_unavailable", [S.BINDING, S.BINDING_QR], S.RETURNING_CARD, CARD),
]


def machine_transitions(rows: list[Row], name: Callable[[State], Any]) -> list[dict[str, Any]]:
    """``rows`` as ``transitions`` definitions (states named by ``name``), guards as
    conditions on the model's ``has_card``."""
    out: list[dict[str, Any]] = []
    for row in rows:
        spec: dict[str, Any] = {
            "trigger": row.trigger,
            "source": [name(s) for s in row.sources],
            "dest": name(row.dest),
        }
        if row.guard is Guard.CARD:
            spec["conditions"] = "has_card"
        elif row.guard is Guard.NO_CARD:
            spec["unless"] = "has_card"
        out.append(spec)
    return out


class CustomerMachine:
    """The model the ``transitions`` machine drives; ``path`` records every state entered.

    ``has_card`` says whether the session in progress began with a card: the guarded rows
    of :data:`TRANSITIONS` read it, so the table alone decides where each path goes.
    """

    state: State

    def __init__(self, on_enter: Callable[[State, State, str], None] | None = None) -> None:
        self.path: list[State] = []
        self.has_card = False
        self._on_enter = on_enter
        self._machine = Machine(
            model=self,
            states=State,
            transitions=machine_transitions(TRANSITIONS, lambda s: s),
            initial=State.OUT_OF_SERVICE,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            before_state_change="_starting",
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
            moved = method()
        except MachineError as exc:
            raise TransitionError(f"{trigger!r} is not allowed in state {before.value}") from exc
        if not moved:  # rows exist from here, but no guard holds for this customer
            who = "with a card" if self.has_card else "without a card"
            raise TransitionError(f"{trigger!r} is not allowed in state {before.value} {who}")
        return self.state

    def allowed(self) -> list[str]:
        """Triggers the table allows from the current state, for this customer."""
        return sorted(
            {
                row.trigger
                for row in TRANSITIONS
                if self.state in row.sources
                and (row.guard is None or row.guard.holds(self.has_card))
            }
        )

    def _starting(self, event: Any) -> None:
        start = SESSION_STARTS.get(event.event.name)
        if start is not None:
            self.has_card = start

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
    """The state diagram in Mermaid syntax, straight from the transition table; a guarded
    edge is labelled with its guard (``declined [card]``, ``declined [no card]``)."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.OUT_OF_SERVICE.name}"]
    for row in TRANSITIONS:
        for src in row.sources:
            lines.append(f"    {src.name} --> {row.dest.name}: {row.label()}")
    return "\n".join(lines) + "\n"
