"""Sans-I/O core of the ZT588-style encrypting PIN pad protocol (no ports, no clocks).

Why a separate module: the driver (:mod:`terminal.drivers.pinpad.epp`) and the emulator
(:mod:`sim.devices.epp`) must agree byte for byte, and a framer that only turns bytes into
events can be fuzzed and golden-tested without any I/O (the h11 model).

Wire format. A frame is ``STX | LLL | text | ETX | CC``: ``LLL`` three ASCII decimal digits
giving the text length (0-999), ``text`` printable ASCII, ``CC`` two hex digits of the XOR
of every byte from the first length digit through ETX. Key presses travel as single bytes
*between* frames (:data:`KEY_NAMES`); during PIN entry a digit is reported as ``*``.

Text of a command is ``CMD`` (two letters) + parameters; a response is ``CMD`` + two hex
status digits (``00`` = OK, ``E0``-``EF`` = :data:`ERRORS`) + data. A frame the device could
not decode is answered ``ER`` + ``E9`` so the terminal resends it. Frames may carry key
material or PIN blocks, so :class:`Frame`'s repr shows only the command and the length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from terminal.drivers.pinpad.base import CANCEL, CLEAR, ENTER, FUNCTION_KEYS
from terminal.errors import DeviceFault, LocalProtocolError, RemoteProtocolError
from terminal.security.tdes import encrypt_block

STX, ETX = 0x02, 0x03
MAX_TEXT = 999
DEVICE = "pinpad"

# -- key codes (single bytes between frames) ----------------------------------------------
KEY_NAMES: Mapping[int, str] = {
    **{0x30 + d: str(d) for d in range(10)},  # clear digits (clear entry only)
    0x2A: "*",  # a PIN digit, masked by the pad
    0x0D: ENTER,
    0x08: CLEAR,
    0x1B: CANCEL,
    **{0x81 + i: name for i, name in enumerate(FUNCTION_KEYS)},  # F1..F8 = 0x81..0x88
}
KEY_CODES: Mapping[str, int] = {name: code for code, name in KEY_NAMES.items()}

# -- commands -----------------------------------------------------------------------------
COMMANDS: Mapping[str, str] = {
    "LC": "load key component: slot(2) part(1) key(32|48 hex) -> kcv(6)",
    "LK": "load key encrypted: slot(2) under_slot(2) key(32|48 hex) -> kcv(6)",
    "DI": "device info -> model|serial|firmware",
    "PE": "start PIN entry: slot(2) min(2) max(2) timeout_s(3) pan(12-19)",
    "KE": "start clear entry: max(2) function_keys(1) timeout_s(3)",
    "PB": "get PIN block: format(1) -> format(1) digits(2) block(16 hex)",
    "KV": "key check values -> (slot(2) kcv(6))*",
    "CE": "cancel entry",
    "ER": "(response only) the request frame could not be decoded",
}
PIN_FORMATS: Mapping[int, str] = {0: "ISO 9564 format 0", 1: "ISO 1", 3: "ISO 3", 4: "ISO 4"}

# -- device error codes -> DeviceFault(code) -----------------------------------------------
UNKNOWN_COMMAND, TMK_REQUIRED, KEY_PARITY, INPUT_TIMEOUT = 0xE0, 0xE1, 0xE2, 0xE3
NO_PIN, BAD_FORMAT, BAD_PARAMETER, KEY_MISSING = 0xE4, 0xE5, 0xE6, 0xE7
BUSY, CHECKSUM_ERROR, DEVICE_FAILURE = 0xE8, 0xE9, 0xEF
ERRORS: Mapping[int, str] = {
    UNKNOWN_COMMAND: "unknown command",
    TMK_REQUIRED: "master key (TMK) required: the 'under' slot is empty",
    KEY_PARITY: "key parity error",
    INPUT_TIMEOUT: "input timed out",
    NO_PIN: "no PIN entered",
    BAD_FORMAT: "PIN block format not loaded or not supported",
    BAD_PARAMETER: "bad parameter",
    KEY_MISSING: "no key in the requested slot",
    BUSY: "an entry is already active",
    CHECKSUM_ERROR: "device received a frame with a bad checksum",
    DEVICE_FAILURE: "device failure (tamper or self-test)",
}


@dataclasses.dataclass(frozen=True, repr=False)
class Frame:
    """A complete, checksum-valid frame. ``repr`` hides the text (keys, PIN blocks)."""

    text: str

    @property
    def command(self) -> str:
        return self.text[:2]

    def __repr__(self) -> str:
        return f"Frame({self.command!r}, {len(self.text)} chars)"


@dataclasses.dataclass(frozen=True)
class Key:
    """One key-press byte received between frames."""

    code: int

    @property
    def name(self) -> str:
        return KEY_NAMES[self.code]


@dataclasses.dataclass(frozen=True)
class BadFrame:
    """Something that started like a frame but was not one; the peer should resend."""

    reason: str


Event = Frame | Key | BadFrame


def checksum(body: bytes) -> int:
    """XOR of ``body`` (length digits + text + ETX)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode_frame(text: str) -> bytes:
    """Frame ``text``; refuses what the wire cannot carry instead of sending it mangled."""
    if len(text) > MAX_TEXT:
        raise LocalProtocolError(f"EPP frame text too long: {len(text)} > {MAX_TEXT}")
    if not all(0x20 <= ord(ch) <= 0x7E for ch in text):
        raise LocalProtocolError("EPP frame text must be printable ASCII")
    body = f"{len(text):03d}{text}".encode("ascii") + bytes([ETX])
    return bytes([STX]) + body + f"{checksum(body):02X}".encode("ascii")


def _printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


_HEX = frozenset(b"0123456789ABCDEFabcdef")


class Decoder:
    """Incremental bytes -> events. Never raises on input; the same events for any split.

    Stray bytes outside frames that are not key codes are dropped and counted in
    :attr:`discarded`. A broken frame yields :class:`BadFrame` and decoding resumes at the
    byte that broke it (it may be a key, or the STX of the next frame), so printable bytes
    of a corrupt frame are never mistaken for clear digits.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    @property
    def buffered(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while self._buf:
            first = self._buf[0]
            if first != STX:
                del self._buf[0]
                if first in KEY_NAMES:
                    events.append(Key(first))
                else:
                    self.discarded += 1
                continue
            event = self._frame()
            if event is None:
                break  # wait for more bytes
            events.append(event)
        return events

    def _fail(self, reason: str, resume_at: int) -> BadFrame:
        del self._buf[:resume_at]
        return BadFrame(reason)

    def _frame(self) -> Event | None:
        buf = self._buf
        for i in range(1, min(4, len(buf))):
            if buf[i] not in b"0123456789":
                return self._fail("length is not 3 decimal digits", i)
        if len(buf) < 4:
            return None
        length = int(buf[1:4])
        etx_at = 4 + length
        for i in range(4, min(etx_at, len(buf))):
            if not _printable(buf[i]):
                return self._fail("control byte inside frame text", i)
        if len(buf) <= etx_at:
            return None
        if buf[etx_at] != ETX:
            return self._fail("no ETX where the length says", etx_at)
        for i in range(etx_at + 1, min(etx_at + 3, len(buf))):
            if buf[i] not in _HEX:
                return self._fail("checksum is not 2 hex digits", i)
        if len(buf) < etx_at + 3:
            return None
        expected = checksum(bytes(buf[1 : etx_at + 1]))
        received = int(bytes(buf[etx_at + 1 : etx_at + 3]), 16)
        text = bytes(buf[4:etx_at]).decode("ascii")
        del buf[: etx_at + 3]
        if received != expected:
            return BadFrame(f"checksum mismatch (got {received:02X}, want {expected:02X})")
        return Frame(text)


# -- command builders (terminal side) ------------------------------------------------------


def _key_hex(key: bytes) -> str:
    if len(key) not in (16, 24):
        raise LocalProtocolError(f"TDES key must be 16 or 24 bytes, got {len(key)}")
    return key.hex().upper()


def _slot(slot: int) -> str:
    if not 0 <= slot <= 15:
        raise LocalProtocolError(f"key slot {slot} not in 0..15")
    return f"{slot:02d}"


def load_component(slot: int, part: int, component: bytes) -> str:
    if not 1 <= part <= 9:
        raise LocalProtocolError(f"component part {part} not in 1..9")
    return f"LC{_slot(slot)}{part}{_key_hex(component)}"


def load_encrypted(slot: int, under_slot: int, encrypted_key: bytes) -> str:
    return f"LK{_slot(slot)}{_slot(under_slot)}{_key_hex(encrypted_key)}"


def device_info() -> str:
    return "DI"


def _timeout_s(seconds: float) -> str:
    """Whole seconds, rounded up, 1..999: the pad's own backstop, never before the host's."""
    whole = int(-(-max(seconds, 0.0) // 1))
    return f"{min(max(whole, 1), 999):03d}"


def start_pin_entry(pan: str, slot: int, min_digits: int, max_digits: int, timeout: float) -> str:
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        raise LocalProtocolError("PIN entry needs a 12-19 digit PAN")
    if not 4 <= min_digits <= max_digits <= 12:
        raise LocalProtocolError(f"PIN length limits {min_digits}..{max_digits} not in 4..12")
    return f"PE{_slot(slot)}{min_digits:02d}{max_digits:02d}{_timeout_s(timeout)}{pan}"


def start_key_entry(max_digits: int, function_keys: bool, timeout: float) -> str:
    if not 0 <= max_digits <= 99:
        raise LocalProtocolError(f"clear entry of {max_digits} digits not in 0..99")
    return f"KE{max_digits:02d}{int(function_keys)}{_timeout_s(timeout)}"


def get_pin_block(block_format: int) -> str:
    if block_format not in PIN_FORMATS:
        raise LocalProtocolError(f"unknown PIN block format {block_format}")
    return f"PB{block_format}"


def key_check_values() -> str:
    return "KV"


def cancel_entry() -> str:
    return "CE"


def response(command: str, status: int = 0, data: str = "") -> str:
    """Response text (device side): command, status as 2 hex digits, data."""
    return f"{command}{status:02X}{data}"


# -- response parsers (terminal side) -------------------------------------------------------


def fault(code: int, command: str = "") -> DeviceFault:
    """The :class:`DeviceFault` for a device error code, naming the command it answered."""
    what = ERRORS.get(code, "unlisted device error")
    return DeviceFault(DEVICE, f"{command + ': ' if command else ''}{what}", code)


def parse_status(text: str) -> tuple[str, int, str]:
    """Split a response into (command, status, data); malformed -> RemoteProtocolError."""
    if len(text) < 4 or text[:2] not in COMMANDS:
        raise RemoteProtocolError(f"EPP response {text[:2]!r} is not a known command")
    try:
        status = int(text[2:4], 16)
    except ValueError:
        raise RemoteProtocolError(f"EPP {text[:2]} response has no status") from None
    if status != 0 and status not in range(0xE0, 0xF0):
        raise RemoteProtocolError(f"EPP {text[:2]} status 0x{status:02X} outside E0-EF")
    return text[:2], status, text[4:]


def _hex(data: str, size: int, what: str) -> bytes:
    if len(data) != size * 2 or not set(data) <= set("0123456789ABCDEFabcdef"):
        raise RemoteProtocolError(f"EPP {what}: expected {size} bytes as hex")
    return bytes.fromhex(data)


def parse_kcv(data: str) -> str:
    return _hex(data, 3, "key check value").hex().upper()


def parse_device_info(data: str) -> dict[str, str]:
    fields = data.split("|")
    if len(fields) != 3:
        raise RemoteProtocolError("EPP device info: expected model|serial|firmware")
    return dict(zip(("model", "serial", "firmware"), fields, strict=True))


def parse_pin_block(data: str) -> tuple[int, int, bytes]:
    """(format, digits, block) from a ``PB`` response."""
    if len(data) != 19 or not data[:3].isdigit():
        raise RemoteProtocolError("EPP PIN block response malformed")
    return int(data[0]), int(data[1:3]), _hex(data[3:], 8, "PIN block")


def parse_key_check_values(data: str) -> dict[int, str]:
    if len(data) % 8:
        raise RemoteProtocolError("EPP key check values: expected slot(2)+kcv(6) entries")
    result: dict[int, str] = {}
    for i in range(0, len(data), 8):
        if not data[i : i + 2].isdigit():
            raise RemoteProtocolError("EPP key check values: bad slot number")
        result[int(data[i : i + 2])] = parse_kcv(data[i + 2 : i + 8])
    return result


def key_check_value(key: bytes) -> str:
    """KCV: the first 3 bytes of TDES-encrypting 8 zero bytes, as 6 hex digits."""
    return encrypt_block(key, bytes(8))[:3].hex().upper()
