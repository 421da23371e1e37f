"""Puloon LCDM-4000 style dispenser protocol: frames, incremental decoders, layouts, errors.

No I/O here (the h11 model): the driver (:mod:`terminal.drivers.dispenser.lcdm`) and the
emulator (:mod:`sim.devices.lcdm`) both feed bytes in and get events out, so the framing
the emulator accepts is, byte for byte, the framing the driver sends.

Frames::

    command   EOT 0x04 | ID 0x30 | STX 0x02 | CMD | params        | ETX 0x03 | BCC
    response  SOH 0x01 | ID 0x30 | STX 0x02 | RSP | ERROR | params | ETX 0x03 | BCC

BCC is the XOR of every byte from the first (EOT/SOH) through ETX. Single control bytes
travel between frames: ACK 0x06, NAK 0x15 and (from the device) EOT 0x04. ERROR is 0x20
for OK, otherwise 0x20 + the device error code (:data:`ERROR_CODES`).

Every parameter byte is >= 0x20: counts and quantities are sent as value + 0x20, cassette
types as 0x30 + position. That is why a decoder can treat any byte below 0x20 inside a
frame as "this frame was cut short" and resynchronise on it instead of swallowing the
next frame; only the BCC may take any value.

Parameter layouts (positions 1..4 are the cassettes, top to bottom):

* DISPENSE / TEST_DISPENSE command: ``QTY1 QTY2 QTY3 QTY4 TO1 TO2 RSV*9``; QTY = notes
  + 0x20; TO1/TO2 = 0x20 (use the device's own pick timeout); RSV = 0x20.
* DISPENSE / TEST_DISPENSE / PURGE response (the "counts" layout):
  ``MISS`` (0x30, reserved) then per position ``EXIT REJECT TYPE``: EXIT = notes that
  passed the exit sensor + 0x20, REJECT = notes diverted to the reject tray + 0x20,
  TYPE = 0x30 removed / 0x30 + position present; DISPENSE adds 9 reserved bytes, which
  decoders ignore. Every picked note passes the check sensors and then reaches either
  the exit or the reject tray, so the check-sensor count is EXIT + REJECT: what left the
  cassette. For PURGE, REJECT counts the notes swept from the path and exit into the
  reject tray, by the cassette they came from; EXIT is 0.
* LAST_STATUS response: ERROR is that of the last DISPENSE/TEST_DISPENSE/PURGE, params are
  ``LAST_CMD`` followed by the counts layout of that operation.
* STATUS response: ``DISP`` (0x20 | bit 3 exit sensor blocked, i.e. notes wait at the
  exit | bit 4 reject tray missing) then per position ``STAT TYPE OPAC LENG``:
  STAT = 0x20 | bit 0 near-end sensor, TYPE as above, OPAC/LENG = note reference values
  + 0x20 (reported, not used by the driver). ERROR carries a latched fault, if any.
* SENSOR_DIAG command: ``POS`` (0x31..0x34). On the real device this test-dispenses five
  notes from that cassette into the reject tray; response ``OPAC LENG DIVERT REJECT``.
* RESET: acknowledged, never answered (the device reboots its firmware).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence

from atm_common.errors import LocalProtocolError, RemoteProtocolError
from terminal.errors import DeviceFault

SOH, STX, ETX, EOT, ACK, NAK = 0x01, 0x02, 0x03, 0x04, 0x06, 0x15
DEVICE_ID = 0x30
OK = 0x20  # error byte meaning "no error"
OFFSET = 0x20  # added to counts/quantities so that no parameter byte is a control byte
POSITIONS = 4
MAX_BODY = 64  # longest legal body is 24 bytes; anything far longer is noise
RESERVED_TAIL = 9
EXIT_BLOCKED, REJECT_TRAY_MISSING, NEAR_END = 0x08, 0x10, 0x01


class Command(enum.IntEnum):
    RESET = 0x44
    STATUS = 0x50
    PURGE = 0x51
    DISPENSE = 0x52
    TEST_DISPENSE = 0x53
    LAST_STATUS = 0x55
    SENSOR_DIAG = 0x58

    @property
    def has_response(self) -> bool:
        return self is not Command.RESET


def command_name(code: int) -> str:
    """``DISPENSE (0x52)`` for messages; unknown codes still get a readable name."""
    try:
        return f"{Command(code).name} (0x{code:02X})"
    except ValueError:
        return f"command 0x{code:02X}"


@dataclasses.dataclass(frozen=True)
class ErrorCode:
    code: int
    text: str
    latches: bool  # the device refuses to dispense until it is reset


ERROR_CODES: Mapping[int, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode(0x01, "pick-up error (no note picked)", True),
        ErrorCode(0x02, "feed jam between the check and divert sensors", True),
        ErrorCode(0x03, "jam between the divert and eject sensors", True),
        ErrorCode(0x04, "jam between the eject and exit sensors", True),
        ErrorCode(0x05, "jam: a note stays at the exit sensor", True),
        ErrorCode(0x0C, "over 100 notes in one dispense", False),
        ErrorCode(0x0D, "over 10 rejected notes in one dispense", True),
        ErrorCode(0x0E, "purge aborted", True),
        ErrorCode(0x24, "no cassette in a position asked to dispense", False),
        ErrorCode(0x25, "near-end in a cassette asked to dispense", False),
        ErrorCode(0x26, "no reject tray", False),
        ErrorCode(0x30, "bad command", False),
        ErrorCode(0x31, "bad parameter", False),
    )
}


def describe_error(code: int) -> str:
    entry = ERROR_CODES.get(code)
    return entry.text if entry is not None else "unknown device error"


def device_fault(code: int, command: int | None = None) -> DeviceFault:
    """The :class:`DeviceFault` for a device error code, naming the command it answered."""
    where = f" (answer to {command_name(command)})" if command is not None else ""
    return DeviceFault("dispenser", f"{describe_error(code)}{where}", code=code)


# -- frames ---------------------------------------------------------------------------------


def bcc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def _check_params(params: bytes) -> None:
    if any(b < OFFSET for b in params):
        raise LocalProtocolError(f"LCDM parameters must be bytes >= 0x20, got {params.hex(' ')}")


def encode_command(command: int, params: bytes = b"") -> bytes:
    _check_params(bytes([command]) + params)
    body = bytes([EOT, DEVICE_ID, STX, command]) + params + bytes([ETX])
    return body + bytes([bcc(body)])


def encode_response(command: int, error: int = 0, params: bytes = b"") -> bytes:
    """``error`` is the device error code (0 = OK), sent as 0x20 + code."""
    if not 0 <= error <= 0xFF - OK:
        raise LocalProtocolError(f"error code {error} does not fit the error byte")
    _check_params(bytes([command]) + params)
    body = bytes([SOH, DEVICE_ID, STX, command, OK + error]) + params + bytes([ETX])
    return body + bytes([bcc(body)])


class Control(enum.Enum):
    ACK = ACK
    NAK = NAK
    EOT = EOT


@dataclasses.dataclass(frozen=True)
class Response:
    command: int
    error: int  # device error code, 0 = OK
    params: bytes


@dataclasses.dataclass(frozen=True)
class CommandFrame:
    command: int
    params: bytes


@dataclasses.dataclass(frozen=True)
class BadFrame:
    """Unreadable input. ``framed``: a frame had started (answer NAK); else stray bytes."""

    reason: str
    data: bytes
    framed: bool


Event = Control | Response | CommandFrame | BadFrame


class _Decoder:
    """Byte-at-a-time state machine shared by both directions; never raises, never waits."""

    _start: int
    _controls: frozenset[int]
    _min_body: int

    def __init__(self) -> None:
        self._frame = bytearray()  # bytes of the frame being read, from its start byte
        self._stray = bytearray()
        self._state = "idle"  # idle | id | stx | body | bcc

    def reset(self) -> None:
        self._frame.clear()
        self._stray.clear()
        self._state = "idle"

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        for byte in data:
            self._byte(byte, out)
        self._flush_stray(out)
        return out

    def _flush_stray(self, out: list[Event]) -> None:
        if self._stray:
            raw = bytes(self._stray)
            out.append(BadFrame(f"{len(raw)} stray byte(s) between frames", raw, framed=False))
            self._stray.clear()

    def _abandon(self, reason: str, out: list[Event]) -> None:
        out.append(BadFrame(reason, bytes(self._frame), framed=True))
        self._frame.clear()
        self._state = "idle"

    def _byte(self, byte: int, out: list[Event]) -> None:
        state = self._state
        if state == "idle":
            if byte == self._start:
                self._flush_stray(out)
                self._frame[:] = bytes([byte])
                self._state = "id"
            elif byte in self._controls:
                self._flush_stray(out)
                out.append(Control(byte))
            else:
                self._stray.append(byte)
        elif state in ("id", "stx"):
            if byte != (DEVICE_ID if state == "id" else STX):
                self._abandon(f"bad frame header byte 0x{byte:02X}", out)
                self._byte(byte, out)  # it may start the next frame
                return
            self._frame.append(byte)
            self._state = "stx" if state == "id" else "body"
        elif state == "body":
            if byte == ETX:
                if len(self._frame) - 3 < self._min_body:
                    self._abandon("frame too short", out)
                    return
                self._frame.append(byte)
                self._state = "bcc"
            elif byte < OFFSET:
                self._abandon(f"frame cut short by 0x{byte:02X}", out)
                self._byte(byte, out)
            elif len(self._frame) - 3 >= MAX_BODY:
                self._abandon("frame too long", out)
            else:
                self._frame.append(byte)
        else:  # bcc
            frame = bytes(self._frame) + bytes([byte])
            self._frame.clear()
            self._state = "idle"
            if bcc(frame[:-1]) != byte:
                out.append(BadFrame(f"bad BCC 0x{byte:02X}", frame, framed=True))
            else:
                out.append(self._parse(frame[3:-2]))

    def _parse(self, body: bytes) -> Event:
        raise NotImplementedError


class ResponseDecoder(_Decoder):
    """What the terminal reads: responses, ACK, NAK and the closing EOT."""

    _start = SOH
    _controls = frozenset({ACK, NAK, EOT})
    _min_body = 2

    def _parse(self, body: bytes) -> Event:
        return Response(body[0], body[1] - OK, body[2:])


class CommandDecoder(_Decoder):
    """What the device reads: commands (which start with EOT), ACK and NAK."""

    _start = EOT
    _controls = frozenset({ACK, NAK})
    _min_body = 1

    def _parse(self, body: bytes) -> Event:
        return CommandFrame(body[0], body[1:])


# -- parameter layouts ----------------------------------------------------------------------


def _count(byte: int, what: str) -> int:
    if byte < OFFSET:
        raise RemoteProtocolError(f"dispenser: bad {what} byte 0x{byte:02X}")
    return byte - OFFSET


def _type_byte(position: int, present: bool) -> int:
    return 0x30 + position if present else 0x30


def encode_dispense(quantities: Sequence[int]) -> bytes:
    if len(quantities) != POSITIONS or any(not 0 <= q <= 0xFF - OFFSET for q in quantities):
        raise LocalProtocolError(f"dispense needs 4 quantities 0..223, got {list(quantities)}")
    return bytes(q + OFFSET for q in quantities) + bytes([OFFSET] * (2 + RESERVED_TAIL))


def decode_dispense(params: bytes) -> tuple[int, ...]:
    if len(params) < POSITIONS:
        raise RemoteProtocolError(f"dispenser: dispense parameters too short ({len(params)})")
    return tuple(_count(b, "quantity") for b in params[:POSITIONS])


@dataclasses.dataclass(frozen=True)
class PositionCount:
    exit: int  # notes that passed the exit sensor
    rejected: int  # notes diverted to the reject tray
    present: bool = True

    @property
    def picked(self) -> int:
        """Notes that left the cassette (the check-sensor count)."""
        return self.exit + self.rejected


def encode_counts(counts: Sequence[PositionCount], reserved_tail: bool = False) -> bytes:
    out = bytearray([0x30])
    for position, c in enumerate(counts, start=1):
        out += bytes([c.exit + OFFSET, c.rejected + OFFSET, _type_byte(position, c.present)])
    return bytes(out) + (bytes([OFFSET] * RESERVED_TAIL) if reserved_tail else b"")


def decode_counts(params: bytes) -> tuple[PositionCount, ...]:
    if len(params) < 1 + 3 * POSITIONS:
        raise RemoteProtocolError(f"dispenser: counts parameters too short ({len(params)})")
    return tuple(
        PositionCount(
            _count(params[i], "exit count"),
            _count(params[i + 1], "reject count"),
            params[i + 2] != 0x30,
        )
        for i in range(1, 1 + 3 * POSITIONS, 3)
    )


@dataclasses.dataclass(frozen=True)
class PositionSensors:
    present: bool = True
    near_end: bool = False


@dataclasses.dataclass(frozen=True)
class StatusReport:
    exit_blocked: bool
    reject_tray_missing: bool
    positions: tuple[PositionSensors, ...]


def encode_status(report: StatusReport) -> bytes:
    disp = OFFSET | (EXIT_BLOCKED if report.exit_blocked else 0)
    disp |= REJECT_TRAY_MISSING if report.reject_tray_missing else 0
    out = bytearray([disp])
    for position, s in enumerate(report.positions, start=1):
        stat = OFFSET | (NEAR_END if s.near_end else 0)
        out += bytes([stat, _type_byte(position, s.present), 0x20 + 0x40, 0x20 + 0x50])
    return bytes(out)


def decode_status(params: bytes) -> StatusReport:
    if len(params) < 1 + 4 * POSITIONS:
        raise RemoteProtocolError(f"dispenser: status parameters too short ({len(params)})")
    disp = params[0]
    return StatusReport(
        bool(disp & EXIT_BLOCKED),
        bool(disp & REJECT_TRAY_MISSING),
        tuple(
            PositionSensors(params[i + 1] != 0x30, bool(params[i] & NEAR_END))
            for i in range(1, 1 + 4 * POSITIONS, 4)
        ),
    )
