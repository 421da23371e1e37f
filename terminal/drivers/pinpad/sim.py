"""In-process simulated encrypting PIN pad, driven by a scripted customer.

Why it exists: the terminal must be testable end to end without an EPP, yet the security
boundary must hold even in simulation. So the clear PIN lives only inside this object
(in its private script queue, as :class:`Pin` entries whose ``repr`` hides the digits);
what leaves it is an ISO 9564 format 0 block encrypted under the pad's PIN key, exactly
as from real hardware. A customer who walks away is modelled by advancing the injected
clock by the timeout, never by sleeping.

Script entries, consumed in order by :meth:`SimPinPad.read_pin` / :meth:`SimPinPad.read_keys`:

* ``Pin("1234")``  - PIN digits then ENTER (only valid during PIN entry);
* ``Keys("150")``  - clear digits then ENTER (only valid during clear entry);
* ``Fkey("F1")``   - a function key press (clear entry with function keys allowed);
* ``CANCEL``       - the customer presses CANCEL;
* ``NO_INPUT``     - the customer does nothing: the entry times out.

An empty script behaves like ``NO_INPUT``.
"""

from __future__ import annotations

import collections
import enum
import logging
import time

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError, LocalProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.pinpad.base import (
    CLEAR,
    ENTER,
    FUNCTION_KEYS,
    EntryOutcome,
    KeyEntry,
    PinEntry,
    PinPad,
)
from terminal.security.pinpad_keys import MacKey, PinPadKeys

log = logging.getLogger(__name__)

DEFAULT_PIN_KEY = "0123456789ABCDEFFEDCBA9876543210"


class Pin:
    """The customer types these PIN digits, then ENTER. ``repr`` never shows them."""

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        if digits and not (digits.isascii() and digits.isdigit()):
            raise ValueError("a scripted PIN may contain only the digits 0-9")
        self._digits = digits

    def __repr__(self) -> str:
        return f"Pin(<{len(self._digits)} digits>)"


class Keys:
    """The customer types these digits in clear entry (an amount, a menu number), then ENTER."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        if digits and not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"scripted keys must be digits 0-9, got {digits!r}")
        self.digits = digits

    def __repr__(self) -> str:
        return f"Keys({self.digits!r})"


class Fkey:
    """The customer presses one function key (``F1`` .. ``F8``)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        if key not in FUNCTION_KEYS:
            raise ValueError(f"unknown function key {key!r} (known: {', '.join(FUNCTION_KEYS)})")
        self.key = key

    def __repr__(self) -> str:
        return f"Fkey({self.key!r})"


class Signal(enum.Enum):
    """Script entries that carry no data."""

    CANCEL = "cancel"
    NO_INPUT = "no_input"


CANCEL = Signal.CANCEL
NO_INPUT = Signal.NO_INPUT

Entry = Pin | Keys | Fkey | Signal


def _parse_key(pin_key: bytes | str) -> bytes:
    """A 16- or 24-byte TDES key, given raw or as hex. Never echoes the key in errors."""
    if isinstance(pin_key, str):
        try:
            key = bytes.fromhex(pin_key)
        except ValueError:
            raise ConfigError("config", "devices.pinpad.pin_key", "not a hex string") from None
    else:
        key = bytes(pin_key)
    if len(key) not in (16, 24):
        raise ConfigError(
            "config", "devices.pinpad.pin_key", f"TDES key must be 16 or 24 bytes, got {len(key)}"
        )
    return key


class SimPinPad(PinPad):
    """An EPP whose keyboard is a script; holds the PIN key and the clear PIN privately."""

    blocking = False  # in-process state: nothing to wait on

    def __init__(
        self,
        clock: Clock | None = None,
        pin_key: bytes | str | None = DEFAULT_PIN_KEY,
        *,
        security: str = "tdes",
        tmk: bytes | str | None = None,
        mac_key: bytes | str | None = None,
        ik: bytes | str | None = None,
        ik_id: bytes | str | None = None,
    ) -> None:
        """``pin_key``/``mac_key`` preload working keys (as after a key exchange);
        ``tmk`` is the master key of a TDES key set; ``ik``/``ik_id`` an AES DUKPT one."""
        super().__init__()
        self._clock: Clock = clock if clock is not None else SystemClock()
        if pin_key in ("", b""):
            pin_key = None  # TOML has no null: an empty key means "none preloaded"
        if pin_key is not None:
            _parse_key(pin_key)  # a readable ConfigError for a bad key, before anything else
        try:
            self.__keys = PinPadKeys(
                security,
                tmk=tmk,
                pin_key=pin_key if security == "tdes" else None,
                mac_key=mac_key,
                ik=ik,
                ik_id=ik_id,
            )
        except LocalProtocolError as exc:
            raise ConfigError("config", "devices.pinpad", str(exc)) from None
        self.__script: collections.deque[Entry] = collections.deque()

    def __repr__(self) -> str:
        return f"SimPinPad(pending={self.pending()})"

    # -- the scripted customer ------------------------------------------------------------

    def script(self, *entries: Entry) -> None:
        """Append what the customer will do, in order (see the module docstring)."""
        for entry in entries:
            if not isinstance(entry, Pin | Keys | Fkey | Signal):
                raise TypeError(f"not a PIN pad script entry: {type(entry).__name__}")
        self.__script.extend(entries)

    def pending(self) -> int:
        """Scripted entries not yet consumed."""
        return len(self.__script)

    def clear_script(self) -> int:
        """Forget unconsumed entries (a customer who walked off); returns how many."""
        count = len(self.__script)
        self.__script.clear()
        return count

    # -- the terminal's side ----------------------------------------------------------------

    def _do_status(self) -> DeviceStatus:
        return DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        return {"security": self.__keys.security}

    def _next(self) -> Entry:
        return self.__script.popleft() if self.__script else NO_INPUT

    def _timed_out(self, timeout: float) -> None:
        self._clock.advance(timeout)
        log.info("pinpad: entry timed out after %.1f s", timeout)

    def _do_key_pending(self) -> str | None:
        head = self.__script[0] if self.__script else None
        return head.key if isinstance(head, Fkey) else None

    def _do_discard_pending_key(self) -> None:
        if self._do_key_pending() is not None:
            self.__script.popleft()

    def _live(self) -> bool:
        """Nothing scripted, and a screen attached: wait for the customer in real time."""
        return not self.__script and self.screen_keys is not None

    def _screen_entry(self, max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
        """Clear entry from the screen's keys (the pad's own keyboard is the script)."""
        assert self.screen_keys is not None
        deadline = time.monotonic() + timeout
        digits = ""
        while True:
            key = self.screen_keys.take(max(0.0, deadline - time.monotonic()))
            if key is None:
                self._timed_out(timeout)
                return KeyEntry(EntryOutcome.TIMEOUT)
            self.reported(key)
            if key.isdigit() and len(key) == 1:
                digits = (digits + key)[:max_digits]
            elif key == CLEAR:
                digits = ""
            elif key == "CANCEL":
                return KeyEntry(EntryOutcome.CANCELLED)
            elif key == ENTER:
                return KeyEntry(EntryOutcome.ENTERED, digits)
            elif key in FUNCTION_KEYS and function_keys:
                return KeyEntry(EntryOutcome.ENTERED, key)

    def _do_read_pin(self, pan: str, min_digits: int, max_digits: int, timeout: float) -> PinEntry:
        if self._live():
            assert self.screen_keys is not None
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0 and not self.__script:
                key = self.screen_keys.take(min(left, 0.05))
                if key == "CANCEL":  # the only key the screen may give a PIN entry
                    return PinEntry(EntryOutcome.CANCELLED)
        entry = self._next()
        if entry is CANCEL:
            return PinEntry(EntryOutcome.CANCELLED)
        if entry is NO_INPUT:
            self._timed_out(timeout)
            return PinEntry(EntryOutcome.TIMEOUT)
        if not isinstance(entry, Pin):
            raise LocalProtocolError(
                f"pinpad script: {entry!r} during PIN entry (expected Pin, CANCEL or NO_INPUT)"
            )
        # Like a real EPP: keys beyond max_digits are ignored, and ENTER with fewer than
        # min_digits is ignored too, so the pad keeps waiting until the entry times out.
        pin = entry._digits[:max_digits]
        if len(pin) < min_digits:
            log.info("pinpad: ENTER ignored after %d digits (minimum %d)", len(pin), min_digits)
            self._timed_out(timeout)
            return PinEntry(EntryOutcome.TIMEOUT)
        try:
            block, block_format, ksn = self.__keys.pin_block(pin, pan)
        except ValueError as exc:
            # Report what was wrong, never echo the PIN.
            raise LocalProtocolError(f"pinpad: cannot build a PIN block: {exc}") from None
        for _ in pin:
            self.reported("*")  # the pad's event: a digit was pressed, never which
        self.reported(ENTER)
        log.info("pinpad: PIN entered (%d digits)", len(pin))
        return PinEntry(
            EntryOutcome.ENTERED, block=block, digits=len(pin), block_format=block_format, ksn=ksn
        )

    def _do_mac(self, data: bytes, key: MacKey, ksn: str | None) -> bytes:
        return self.__keys.mac(data, key, ksn)

    def _do_next_ksn(self) -> str | None:
        return self.__keys.next_ksn()

    def _do_decrypt_response_data(self, sealed: bytes, ksn: str | None) -> bytes:
        return self.__keys.decrypt_response_data(sealed, ksn)

    def _do_encrypt_advice_data(self, plaintext: bytes, ksn: str | None) -> bytes:
        return self.__keys.encrypt_advice_data(plaintext, ksn)

    def _do_install_working_keys(
        self, pin_key_under_tmk: str, mac_key_under_tmk: str
    ) -> dict[str, str]:
        return self.__keys.install_working_keys(pin_key_under_tmk, mac_key_under_tmk)

    def check_values(self) -> dict[str, str]:
        """Key check values of the loaded TDES keys (never the keys)."""
        return self.__keys.check_values()

    def _do_read_keys(self, max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
        screen = self.screen_keys
        if screen is not None and (screen.peek() is not None or self._live()):
            return self._screen_entry(max_digits, timeout, function_keys)
        if (
            max_digits == 0
            and not function_keys
            and not (self.__script and self.__script[0] is CANCEL)
        ):
            # an entry that takes nothing but CANCEL (a waiting screen): whatever else the
            # customer is scripted to do is for a later entry, so it stays in the script
            self._timed_out(timeout)
            return KeyEntry(EntryOutcome.TIMEOUT)
        entry = self._next()
        if entry is CANCEL:
            return KeyEntry(EntryOutcome.CANCELLED)
        if entry is NO_INPUT:
            self._timed_out(timeout)
            return KeyEntry(EntryOutcome.TIMEOUT)
        if isinstance(entry, Keys):
            return KeyEntry(EntryOutcome.ENTERED, entry.digits[:max_digits])
        if isinstance(entry, Fkey):
            if not function_keys:
                raise LocalProtocolError(
                    f"pinpad script: {entry!r} during clear entry with function keys disabled"
                )
            return KeyEntry(EntryOutcome.ENTERED, entry.key)
        raise LocalProtocolError(
            f"pinpad script: {entry!r} during clear entry (expected Keys, Fkey, CANCEL or NO_INPUT)"
        )
