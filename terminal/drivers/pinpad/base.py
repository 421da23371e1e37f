"""Encrypting PIN pad ABC.

The clear PIN never leaves the PIN pad: :meth:`PinPad.read_pin` returns only the PIN
block encrypted under the pad's PIN key, plus how many digits were typed. Key presses
that the terminal may see (digits in clear-entry mode, function keys) come back from
:meth:`PinPad.read_keys`.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
from abc import abstractmethod
from collections.abc import Callable

from atm_common.errors import LocalProtocolError
from terminal.drivers.base import Device
from terminal.security.pinpad_keys import MacKey

__all__ = ["MacKey"]


class EntryOutcome(enum.Enum):
    ENTERED = "entered"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


# Keys a PIN pad reports. Digits are '0'..'9' in clear mode and '*' during PIN entry.
ENTER, CANCEL, CLEAR = "ENTER", "CANCEL", "CLEAR"
FUNCTION_KEYS = tuple(f"F{i}" for i in range(1, 9))


@dataclasses.dataclass(frozen=True, repr=False)
class PinEntry:
    """Result of secure PIN entry. ``block`` is ciphertext; ``repr`` never shows it."""

    outcome: EntryOutcome
    block: bytes = b""
    digits: int = 0
    block_format: int = 0  # ISO 9564 format number
    ksn: str = ""  # DUKPT key serial number the block was encrypted under (field 53)

    def __repr__(self) -> str:
        return f"PinEntry(outcome={self.outcome.value}, digits={self.digits})"


@dataclasses.dataclass(frozen=True)
class KeyEntry:
    """Result of clear (non-PIN) key entry: an amount, a menu choice."""

    outcome: EntryOutcome
    keys: str = ""  # digits typed, or the function key that ended entry ("F1")


class ScreenKeys:
    """Keys pressed on the customer screen (a touch, or a function key beside it), handed
    to the PIN pad's clear entry as if typed on the pad. Thread-safe: the screen's server
    presses, the session's thread reads. Never used for PIN entry: the screen offers no
    digits while the PIN pad is in PIN mode, and a PIN entry takes only CANCEL from here.
    """

    def __init__(self) -> None:
        self._keys: collections.deque[str] = collections.deque()
        self._ready = threading.Condition()

    def press(self, key: str) -> None:
        with self._ready:
            self._keys.append(key)
            self._ready.notify_all()

    def peek(self) -> str | None:
        with self._ready:
            return self._keys[0] if self._keys else None

    def take(self, wait: float = 0.0) -> str | None:
        """The next key, waiting up to ``wait`` seconds (real time) for one."""
        with self._ready:
            if not self._keys and wait > 0:
                self._ready.wait_for(lambda: bool(self._keys), timeout=wait)
            return self._keys.popleft() if self._keys else None

    def clear(self) -> None:
        with self._ready:
            self._keys.clear()


class PinPad(Device):
    kind = "pinpad"
    # Set by a customer display: the keys the pad reports as they are pressed ("*" for
    # each PIN digit, never the digit), so the screen can show the PIN's length.
    key_listener: Callable[[str], None] | None = None
    screen_keys: ScreenKeys | None = None  # the screen's keys, merged into clear entry

    def attach_screen(self, keys: ScreenKeys, listener: Callable[[str], None]) -> None:
        """Merge ``keys`` into clear entry and report every press to ``listener``."""
        self.screen_keys, self.key_listener = keys, listener

    def reported(self, key: str) -> None:
        """A press the pad reports (drivers call this for each one)."""
        if self.key_listener is not None:
            self.key_listener(key)

    def key_pending(self) -> str | None:
        """The key waiting to be read, without consuming it (the idle screen's "cardless"
        while the terminal also waits for a card); None when there is none."""
        self._require_open()
        if self.screen_keys is not None and (key := self.screen_keys.peek()) is not None:
            return key
        return self._do_key_pending()

    def discard_pending_key(self) -> None:
        """Consume the key :meth:`key_pending` returned."""
        self._require_open()
        if self.screen_keys is not None and self.screen_keys.take() is not None:
            return
        self._do_discard_pending_key()

    def _do_key_pending(self) -> str | None:
        return None

    def _do_discard_pending_key(self) -> None:
        return None

    def read_pin(
        self, pan: str, *, min_digits: int = 4, max_digits: int = 12, timeout: float = 30.0
    ) -> PinEntry:
        """Secure PIN entry bound to ``pan``; returns an encrypted PIN block."""
        self._require_open()
        if not 4 <= min_digits <= max_digits <= 12:
            raise LocalProtocolError(f"PIN length limits {min_digits}..{max_digits} not in 4..12")
        if not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise LocalProtocolError("PIN entry needs a 12-19 digit PAN")
        return self._do_read_pin(pan, min_digits, max_digits, timeout)

    def read_keys(
        self, *, max_digits: int = 6, timeout: float = 30.0, function_keys: bool = True
    ) -> KeyEntry:
        """Clear entry: digits until ENTER, or a single function key when allowed."""
        self._require_open()
        if max_digits < 0:
            raise LocalProtocolError("max_digits must not be negative")
        return self._do_read_keys(max_digits, timeout, function_keys)

    # -- keys and MACs: computed inside the PIN pad, which never gives a key out --

    def mac(self, data: bytes, *, key: MacKey = MacKey.WORKING, ksn: str | None = None) -> bytes:
        """8-byte MAC of ``data`` under the pad's MAC key (DUKPT: the key for ``ksn``)."""
        self._require_open()
        return self._do_mac(data, key, ksn)

    def next_ksn(self) -> str | None:
        """DUKPT: start a new transaction and return its KSN; None for TDES key sets."""
        self._require_open()
        return self._do_next_ksn()

    def install_working_keys(
        self, pin_key_under_tmk: str, mac_key_under_tmk: str
    ) -> dict[str, str]:
        """Key exchange: load a TPK and TAK encrypted under the TMK; returns check values."""
        self._require_open()
        return self._do_install_working_keys(pin_key_under_tmk, mac_key_under_tmk)

    def decrypt_response_data(self, sealed: bytes, *, ksn: str | None = None) -> bytes:
        """Open a response's sealed private data (field 63 of a 0110/0210) under the
        pad's response data key (DUKPT: the key for ``ksn``); the key stays in the pad.
        ValueError when the data does not open (altered, or sealed for another pad)."""
        self._require_open()
        return self._do_decrypt_response_data(sealed, ksn)

    def encrypt_advice_data(self, plaintext: bytes, *, ksn: str | None = None) -> bytes:
        """Seal private data for the host (field 63 of a 0620) under the pad's advice
        data key (DUKPT: the key for ``ksn``)."""
        self._require_open()
        return self._do_encrypt_advice_data(plaintext, ksn)

    @abstractmethod
    def _do_decrypt_response_data(self, sealed: bytes, ksn: str | None) -> bytes: ...

    @abstractmethod
    def _do_encrypt_advice_data(self, plaintext: bytes, ksn: str | None) -> bytes: ...

    @abstractmethod
    def _do_mac(self, data: bytes, key: MacKey, ksn: str | None) -> bytes: ...

    @abstractmethod
    def _do_next_ksn(self) -> str | None: ...

    @abstractmethod
    def _do_install_working_keys(
        self, pin_key_under_tmk: str, mac_key_under_tmk: str
    ) -> dict[str, str]: ...

    @abstractmethod
    def _do_read_pin(
        self, pan: str, min_digits: int, max_digits: int, timeout: float
    ) -> PinEntry: ...

    @abstractmethod
    def _do_read_keys(self, max_digits: int, timeout: float, function_keys: bool) -> KeyEntry: ...
