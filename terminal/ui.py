"""What the customer sees: screens as data, and displays that render or record them.

The session controller only names a screen and its values; a kiosk front end, the
console (``atm run --sim``) and the tests' recorder each render that their own way.
Screens never carry a PIN, and card numbers only masked. Each member's value is its
English text (the gettext msgid the kiosk's catalogs translate); adding a screen means
adding a member here, a template in ``terminal/kiosk/templates/`` and its catalog
entries (a test fails until all three exist).

Values are strings, so the console can ``format`` them; two kinds say more about
themselves for a display that renders richer: :class:`Amount` (an amount the kiosk
formats per locale) and :class:`Image` (a PNG data URI, e.g. a QR code).
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Protocol, runtime_checkable

from atm_common.money import format_minor

log = logging.getLogger(__name__)


class Amount(str):
    """A people-facing amount: reads as ``format_minor`` text, and keeps the minor units
    and currency so a display can format it for the customer's locale."""

    minor: int
    currency: str

    def __new__(cls, minor: int, currency: str) -> Amount:
        text = super().__new__(cls, format_minor(minor, currency))
        text.minor, text.currency = int(minor), currency
        return text


class Image(str):
    """A picture for the screen as a ``data:image/png;base64,...`` URI (a QR code).

    ``text`` is the same picture for a text-only screen (the console's QR in blocks):
    formatting the value into a screen's text gives it, so the console shows the
    picture, not the URI."""

    text: str

    def __new__(cls, data_uri: str, text: str = "") -> Image:
        if not data_uri.startswith("data:image/png;base64,"):
            raise ValueError("a screen image must be a PNG data URI")
        image = super().__new__(cls, data_uri)
        image.text = text
        return image

    def __format__(self, spec: str) -> str:
        return format(self.text, spec) if self.text else super().__format__(spec)


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
    SUPERVISOR_REFUSED = "Supervisor entry refused: {reason}. Please take your card."
    SUPERVISOR_REPORT = "{report}"
    # supervisor mode at the kiosk: the F8 key entry and the menu (terminal/supervisor/desk.py)
    SUPERVISOR_KEY = "Supervisor key: type it on the PIN pad and press ENTER. {problem}"
    SUPERVISOR_LOCKED = "Supervisor key entry is locked for {seconds} s after wrong keys."
    SUPERVISOR_MENU = "Supervisor mode ({role}): {options}. {problem}"
    SUPERVISOR_COUNT = "Cassette {cassette} ({denomination}): {what}, then ENTER. {problem}"
    SUPERVISOR_STATUS = "{status}"
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


@runtime_checkable
class WatchedDisplay(Protocol):
    """A display that can stop answering (a page that misses its heartbeat): the
    terminal is out of service until it answers again."""

    def show(self, screen: Screen, **values: Any) -> None: ...

    def responsive(self) -> bool: ...


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

    def show_text(self, text: str) -> None:
        self._write(text)
