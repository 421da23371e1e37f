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

Security modes (``SM``). A pad is either ``tdes`` (a TMK from the key ceremony, a TPK and
TAK from the host's key exchange ``WK``; PIN blocks ISO format 0; MACs ISO 9797-1
algorithm 3) or ``aes-dukpt`` (an AES DUKPT initial key; PIN blocks ISO format 4 with the
transaction's KSN; MACs AES-CMAC cut to 8 bytes under the key of the message's KSN). The
terminal need not be told which: ``PB`` without a format answers in the pad's own one.

MACs over long messages. A frame carries at most 999 characters, so ``MA`` takes about
485 bytes of data (hex doubles it). Longer data goes ``MI`` (key, KSN), ``MU`` chunks
numbered from 001 (:data:`MAC_CHUNK` bytes each), then ``MF`` for the MAC, at most
:data:`MAX_MAC_DATA` bytes in all; :func:`mac_commands` picks the form. Resends stay
safe: a chunk repeating the last applied number is re-acknowledged, not appended twice,
and ``MF`` can be asked again until the next ``MI``. ``NK`` is the one command a resend
repeats: a lost answer costs a skipped DUKPT counter, never a reused KSN.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping

from atm_common.errors import KeyUnavailable, LocalProtocolError, RemoteProtocolError
from terminal.drivers.pinpad.base import CANCEL, CLEAR, ENTER, FUNCTION_KEYS, MacKey
from terminal.errors import DeviceFault
from terminal.security.pinpad_keys import AES_DUKPT, TDES

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
    "PB": "get PIN block: [format(1)] -> format(1) digits(2) block(16|32 hex) [ksn(24 hex)]",
    "KV": "key check values -> (slot(2) kcv(6))*",
    "CE": "cancel entry",
    "SM": "security mode -> 'tdes' | 'aes-dukpt|' ksn(24 hex, current, not advanced)",
    "MA": "MAC in one frame: key(1 M|W) ksn_len(2 00|24) ksn data(hex) -> mac(16 hex)",
    "MI": "start a chunked MAC: key(1 M|W) ksn_len(2 00|24) ksn",
    "MU": "MAC data chunk: seq(3, from 001) data(hex)",
    "MF": "finish the chunked MAC -> mac(16 hex); repeatable until the next MI",
    "NK": "next DUKPT KSN -> ksn(24 hex), or no data when the pad is not DUKPT",
    "WK": "install working keys under the TMK: tpk(32 hex) tak(32 hex) -> kcv(6) kcv(6)",
    "DR": "decrypt response data: ksn_len(2 00|24) ksn sealed(base64) -> plaintext(base64)",
    "DA": "encrypt advice data: ksn_len(2 00|24) ksn plaintext(base64) -> sealed(base64)",
    "ER": "(response only) the request frame could not be decoded",
}
PIN_FORMATS: Mapping[int, str] = {0: "ISO 9564 format 0", 1: "ISO 1", 3: "ISO 3", 4: "ISO 4"}
SECURITY_MODES = (TDES, AES_DUKPT)
NATIVE_FORMAT: Mapping[str, int] = {TDES: 0, AES_DUKPT: 4}  # what a bare ``PB`` answers
MAC_KEYS: Mapping[MacKey, str] = {MacKey.MASTER: "M", MacKey.WORKING: "W"}
KSN_HEX = 24  # AES DUKPT KSN: 8-byte initial key id + 4-byte counter
MAX_MAC_DATA = 8192  # the pad's MAC buffer; ISO 8583 requests are far shorter
MAC_CHUNK = (MAX_TEXT - len("MU001")) // 2  # bytes of data per MU frame (497)

# -- device error codes -> DeviceFault(code) -----------------------------------------------
UNKNOWN_COMMAND, TMK_REQUIRED, KEY_PARITY, INPUT_TIMEOUT = 0xE0, 0xE1, 0xE2, 0xE3
NO_PIN, BAD_FORMAT, BAD_PARAMETER, KEY_MISSING = 0xE4, 0xE5, 0xE6, 0xE7
BUSY, CHECKSUM_ERROR, KSN_UNKNOWN, WRONG_MODE = 0xE8, 0xE9, 0xEA, 0xEB
DEVICE_FAILURE = 0xEF
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
    KSN_UNKNOWN: "KSN does not belong to this pad's DUKPT key",
    WRONG_MODE: "not available in the pad's security mode",
    DEVICE_FAILURE: "device failure (tamper or self-test)",
}
# Codes meaning "no usable key": raised as KeyFault, a KeyUnavailable like the sim pad's.
KEY_ERRORS = frozenset({TMK_REQUIRED, KEY_MISSING, KSN_UNKNOWN})


class KeyFault(DeviceFault, KeyUnavailable):
    """The pad has no usable key for the request (E1, E7, EA).

    Why both bases: callers of any :class:`~terminal.drivers.pinpad.base.PinPad` catch
    :class:`KeyUnavailable` (what the in-process pad raises), while EPP code and field
    diagnostics still get the device's ``code``.
    """


class ModeFault(DeviceFault, LocalProtocolError):
    """The request does not exist in the pad's security mode (EB): the terminal's mistake,
    a :class:`LocalProtocolError` as from the in-process pad, with the device's ``code``."""


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
_HEX_TEXT = frozenset("0123456789ABCDEFabcdef")


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


def get_pin_block(block_format: int | None = None) -> str:
    """``PB`` + the format; None asks for the pad's own (0 for tdes, 4 for aes-dukpt)."""
    if block_format is None:
        return "PB"
    if block_format not in PIN_FORMATS:
        raise LocalProtocolError(f"unknown PIN block format {block_format}")
    return f"PB{block_format}"


def key_check_values() -> str:
    return "KV"


def cancel_entry() -> str:
    return "CE"


def security_mode() -> str:
    return "SM"


def next_ksn() -> str:
    return "NK"


def _ksn_field(ksn: str | None) -> str:
    """``00`` for no KSN, else ``24`` + the KSN; a malformed KSN is refused, not sent."""
    if not ksn:
        return "00"
    if len(ksn) != KSN_HEX or not set(ksn) <= _HEX_TEXT:
        raise LocalProtocolError(f"a DUKPT KSN is {KSN_HEX} hex digits")
    return f"{KSN_HEX}{ksn.upper()}"


def mac_commands(data: bytes, key: MacKey = MacKey.WORKING, ksn: str | None = None) -> list[str]:
    """The command texts that MAC ``data``: one ``MA`` if it fits a frame, else
    ``MI``, ``MU`` x n, ``MF``. The answer to the last one carries the MAC."""
    if len(data) > MAX_MAC_DATA:
        raise LocalProtocolError(f"MAC data of {len(data)} bytes exceeds {MAX_MAC_DATA}")
    head = f"{MAC_KEYS[key]}{_ksn_field(ksn)}"
    single = f"MA{head}{data.hex().upper()}"
    if len(single) <= MAX_TEXT:
        return [single]
    chunks = [data[i : i + MAC_CHUNK] for i in range(0, len(data), MAC_CHUNK)]
    updates = [f"MU{n:03d}{chunk.hex().upper()}" for n, chunk in enumerate(chunks, start=1)]
    return [f"MI{head}", *updates, "MF"]


def _data_command(command: str, data: bytes, ksn: str | None) -> str:
    text = f"{command}{_ksn_field(ksn)}{base64.b64encode(data).decode('ascii')}"
    if len(text) > MAX_TEXT:
        raise LocalProtocolError(f"{len(data)} bytes of private data do not fit one frame")
    return text


def decrypt_response_data(sealed: bytes, ksn: str | None = None) -> str:
    """``DR``: open a response's sealed private data in the pad (base64: it fits a frame)."""
    return _data_command("DR", sealed, ksn)


def encrypt_advice_data(plaintext: bytes, ksn: str | None = None) -> str:
    """``DA``: seal an advice's private data in the pad."""
    return _data_command("DA", plaintext, ksn)


def parse_data(data: str) -> bytes:
    """The base64 answer of ``DR`` or ``DA``."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("PIN pad data answer is not base64") from None


def install_working_keys(pin_key_under_tmk: bytes, mac_key_under_tmk: bytes) -> str:
    """``WK``: the host's TPK and TAK, each 16 bytes encrypted under the TMK."""
    if len(pin_key_under_tmk) != 16 or len(mac_key_under_tmk) != 16:
        raise LocalProtocolError("working keys are 16-byte TDES keys under the TMK")
    return f"WK{pin_key_under_tmk.hex().upper()}{mac_key_under_tmk.hex().upper()}"


def response(command: str, status: int = 0, data: str = "") -> str:
    """Response text (device side): command, status as 2 hex digits, data."""
    return f"{command}{status:02X}{data}"


# -- response parsers (terminal side) -------------------------------------------------------


def fault(code: int, command: str = "") -> DeviceFault:
    """The :class:`DeviceFault` for a device error code, naming the command it answered."""
    what = ERRORS.get(code, "unlisted device error")
    message = f"{command + ': ' if command else ''}{what}"
    if code in KEY_ERRORS:
        return KeyFault(DEVICE, message, code)
    if code == WRONG_MODE:
        return ModeFault(DEVICE, message, code)
    return DeviceFault(DEVICE, message, code)


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
    if len(data) != size * 2 or not set(data) <= _HEX_TEXT:
        raise RemoteProtocolError(f"EPP {what}: expected {size} bytes as hex")
    return bytes.fromhex(data)


def parse_kcv(data: str) -> str:
    return _hex(data, 3, "key check value").hex().upper()


def parse_device_info(data: str) -> dict[str, str]:
    fields = data.split("|")
    if len(fields) != 3:
        raise RemoteProtocolError("EPP device info: expected model|serial|firmware")
    return dict(zip(("model", "serial", "firmware"), fields, strict=True))


def parse_pin_block(data: str) -> tuple[int, int, bytes, str]:
    """(format, digits, block, KSN or "") from a ``PB`` response.

    The block is 16 bytes in format 4 (AES), 8 otherwise; a DUKPT pad appends the KSN.
    """
    if len(data) < 3 or not data[:3].isdigit() or int(data[0]) not in PIN_FORMATS:
        raise RemoteProtocolError("EPP PIN block response malformed")
    block_format, digits = int(data[0]), int(data[1:3])
    size = 16 if block_format == 4 else 8
    block = _hex(data[3 : 3 + size * 2], size, "PIN block")
    ksn = data[3 + size * 2 :]
    if ksn:
        _hex(ksn, KSN_HEX // 2, "PIN block KSN")
    return block_format, digits, block, ksn.upper()


def parse_security_mode(data: str) -> tuple[str, str | None]:
    """(mode, current KSN) from an ``SM`` response; the KSN only for aes-dukpt."""
    mode, _, ksn = data.partition("|")
    if mode not in SECURITY_MODES or bool(ksn) != (mode == AES_DUKPT):
        raise RemoteProtocolError("EPP security mode response malformed")
    return mode, (_hex(ksn, KSN_HEX // 2, "KSN").hex().upper() if ksn else None)


def parse_mac(data: str) -> bytes:
    return _hex(data, 8, "MAC")


def parse_next_ksn(data: str) -> str | None:
    """The new KSN of an ``NK`` response; None when the pad is not DUKPT."""
    return _hex(data, KSN_HEX // 2, "KSN").hex().upper() if data else None


def parse_working_key_kcvs(data: str) -> dict[str, str]:
    """``WK`` response -> ``{"TPKKCV": ..., "TAKKCV": ...}``."""
    if len(data) != 12:
        raise RemoteProtocolError("EPP working key response: expected two 6-digit KCVs")
    return {"TPKKCV": parse_kcv(data[:6]), "TAKKCV": parse_kcv(data[6:])}


def parse_key_check_values(data: str) -> dict[int, str]:
    if len(data) % 8:
        raise RemoteProtocolError("EPP key check values: expected slot(2)+kcv(6) entries")
    result: dict[int, str] = {}
    for i in range(0, len(data), 8):
        if not data[i : i + 2].isdigit():
            raise RemoteProtocolError("EPP key check values: bad slot number")
        result[int(data[i : i + 2])] = parse_kcv(data[i + 2 : i + 8])
    return result
