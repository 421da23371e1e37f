"""What the customer sees: screens as data, and displays that render or record them.

The session controller only names a screen and its values; a kiosk front end, the
console (``atm run --sim``) and the tests' recorder each render that their own way.
Screens never carry a PIN, and card numbers only masked.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Screen(enum.Enum):
    WELCOME = "Welcome. Please insert your card."
    ENTER_PIN = "Please enter your PIN and press ENTER."
    WRONG_PIN = "Incorrect PIN. Please try again."
    MENU = "F1 Cash withdrawal   F2 Balance   F3 Payment app   (up to {limit} available)"
    MENU_BALANCE_ONLY = (
        "F2 Balance   F3 Payment app   (cash withdrawal is not available at this machine now)"
    )
    ENTER_AMOUNT = "Enter the amount in whole units (up to {limit}) and press ENTER."
    CANNOT_DISPENSE = "This amount cannot be dispensed. Notes available: {notes}."
    PLEASE_WAIT = "Please wait..."
    TAKE_CASH = "Please take your cash."
    BALANCE = "Balance {ledger}, available {available}. Press ENTER."
    DECLINED = "{reason}"
    TAKE_CARD = "Please take your card."
    CARD_RETAINED = "Your card has been retained. Please contact your bank."
    RECEIPT = "{receipt}"
    OUT_OF_SERVICE = "Sorry, this machine is out of service."
    # receipt printer and supervisor mode (docs/supervisor.md)
    NO_RECEIPT = "This machine cannot print a receipt now ({reason}). Continuing without one."
    SUPERVISOR = "Supervisor mode ({role}). This machine is not serving customers."
    SUPERVISOR_REPORT = "{report}"
    # cardless withdrawal
    CARDLESS_PHONE = "Cardless withdrawal: enter your mobile number and press ENTER."
    CARDLESS_METHOD = "F1 Reservation code   F2 Face   F3 Code and face"
    ENTER_CODE = "Enter your reservation code and press ENTER."
    LOOK_AT_CAMERA = "Please look at the camera."
    NOT_MATCHED = "That did not match your reservation. Please try again."
    # corporate cards (enterprise roles): F1.. options built from the host's answer
    CHOOSE_ROLE = "Act as: {options}"
    CORPORATE_MENU = "{options}"
    CHOOSE_ACCOUNT = "Fund account: {options}"
    # joint accounts
    ENTER_PERSONAL_CODE = "Joint account: enter your personal code and press ENTER."
    AWAITING_APPROVAL = (
        "Waiting for a co-owner to approve in the bank app. Reference {ref},"
        " {seconds} s left. CANCEL to stop."
    )
    # binding the account to a payment app (terminal/session/binding.py)
    BINDING_WAIT = "Asking the payment app for a binding code..."
    BINDING_QR = "Scan this code with your payment app ({png}):\n{qr}"
    BINDING_DONE = "Your account is now bound to the payment app."
    BINDING_FAILED = "The account was not bound: {reason}."
    RESERVATION_CANCELLED = (
        "Too many attempts: the reservation is cancelled and the amount released."
    )


class Display(Protocol):
    def show(self, screen: Screen, **values: Any) -> None: ...


class RecordingDisplay:
    """Keeps every screen shown, for tests and the headless demo."""

    def __init__(self) -> None:
        self.shown: list[tuple[Screen, dict[str, Any]]] = []

    def show(self, screen: Screen, **values: Any) -> None:
        self.shown.append((screen, values))
        log.debug("screen %s", screen.name)

    def texts(self) -> list[str]:
        return [screen.value.format(**values) for screen, values in self.shown]


class CallbackDisplay:
    """Renders each screen's text through a callable (the console runner's ``print``)."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def show(self, screen: Screen, **values: Any) -> None:
        self._write(screen.value.format(**values))
