"""An LCDM-4000 style cash dispenser on the far side of a serial line.

It speaks the wire protocol of :mod:`terminal.drivers.dispenser.lcdm_protocol` (ACK the
command, answer after the notes are picked, resend on NAK, close with EOT) and keeps the
same books as :class:`~terminal.drivers.dispenser.sim.SimDispenser`: every note is in one
place - a cassette, the exit (picked, not yet taken), the customer's hand, the retract
count (swept off the exit by PURGE) or the reject tray - so tests check::

    initial == cassettes + handed out + retracted + at the exit + rejected

It offers SimDispenser's customer and fault API (``script_take_cash``, ``inject_jam``,
``inject_pick_failure``, ``inject_reject``, ``reset``) plus wire faults that only a serial
device can have (``garble_next``, ``mute``, ``nak_next``, ``inject_error``) and
sensor states (``near_end``, ``cassette_removed``, ``remove_reject_tray``). Wire faults
take an optional ``command`` so a test can aim at, say, the DISPENSE and not the STATUS
before it.

Time: a response is due ``seconds_per_note`` per picked note after the command; it is
sent when the terminal's read reaches that moment. On a manual clock :meth:`poll` advances
the clock to it, so a run is instant and exact; on the system clock (behind a pty) the
answer simply comes later.

The customer: the LCDM has no shutter and no "present" command; on a kiosk the customer
pulls the notes when the screen says so. The emulator takes the terminal's LAST_STATUS
right after a STATUS that showed notes at the exit - what ``LcdmDispenser.present``
sends when it starts watching the exit - as that prompt, and plays the next scripted
customer then (taken by default), exactly once per present, like SimDispenser.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from atm_common.clock import Clock, SystemClock
from atm_common.errors import RemoteProtocolError
from terminal.drivers.dispenser import lcdm_protocol as p
from terminal.drivers.dispenser.notes import NoteBooks, NotePath

log = logging.getLogger(__name__)

TOO_MANY_NOTES = 0x0C
NO_CASSETTE, NO_REJECT_TRAY, BAD_COMMAND, BAD_PARAMETER = 0x24, 0x26, 0x30, 0x31
MAX_NOTES, MAX_REJECTS = 100, 10


class LcdmEmulator(NoteBooks):
    def __init__(
        self,
        cassettes: Sequence[tuple[int, int]],
        clock: Clock | None = None,
        seconds_per_note: float = 0.2,
    ) -> None:
        if not 1 <= len(cassettes) <= p.POSITIONS:
            raise ValueError("an LCDM-4000 holds 1 to 4 cassettes")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.seconds_per_note = seconds_per_note
        self.notes = NotePath(cassettes)
        self._slots = self.notes.slots
        self._exit = self.notes.stacked  # an LCDM presents at its exit: the stacker
        self.fault = 0  # latched device error code, 0 = none
        self.reject_tray = True
        # the wire
        self._decoder = p.CommandDecoder()
        self._outbox: list[tuple[float, int, bytes]] = []  # (due, command, clean frame)
        self._unacked: tuple[int, bytes] | None = None  # response sent, host ACK pending
        self._mute: list[int | None] = []
        self._nak: list[int | None] = []
        self._garble: list[int | None] = []
        self._errors: list[tuple[int, int | None]] = []
        self._last_op: tuple[int, int, tuple[p.PositionCount, ...]] | None = None
        self._armed = False  # the last command was a STATUS that saw notes at the exit
        self.commands_received = 0
        self.naks_received = 0
        # A person at the kiosk (atm sim devices) takes the notes with take_cash(); the
        # scripted customer (tests, the demo) reaches for them when the terminal presents.
        self.hand_operated = False

    # -- customer, faults and sensors (SimDispenser's API first) ----------------------------

    def reset(self) -> None:
        """An engineer cleared the note path: the latched fault is gone."""
        self.fault = 0

    def garble_next(self, n: int = 1, command: int | None = None) -> None:
        """Corrupt the BCC of the next ``n`` response frames (resends included)."""
        self._garble += [command] * n

    def mute(self, n: int = 1, command: int | None = None) -> None:
        """Ignore the next ``n`` commands entirely: no ACK, nothing done."""
        self._mute += [command] * n

    def nak_next(self, n: int = 1, command: int | None = None) -> None:
        """Answer NAK to the next ``n`` commands, as if their BCC had been bad."""
        self._nak += [command] * n

    def inject_error(self, code: int, command: int | None = None) -> None:
        """The next (matching) command answers with error ``code`` and does nothing."""
        self._errors.append((code, command))

    def cassette_removed(self, position: int, removed: bool = True) -> None:
        self._slots[position].present = not removed

    def near_end(self, position: int, on: bool = True) -> None:
        self._slots[position].near_end = on

    def remove_reject_tray(self, removed: bool = True) -> None:
        self.reject_tray = not removed

    # -- the books (NoteBooks) and what only an LCDM has ------------------------------------

    @property
    def cassette_counts(self) -> dict[int, int]:
        return {i: s.count for i, s in self._slots.items()}

    def invariant_holds(self) -> bool:
        return self.notes.invariant_holds()

    # -- Emulator protocol ------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for event in self._decoder.feed(data):
            if isinstance(event, p.CommandFrame):
                out += self._on_command(event)
            elif event is p.Control.ACK and self._unacked is not None:
                self._unacked = None
                out.append(p.EOT)
            elif event is p.Control.NAK:
                self.naks_received += 1
                if self._unacked is not None:
                    out += self._emit(*self._unacked)
            elif isinstance(event, p.BadFrame) and event.framed:
                out.append(p.NAK)
        return bytes(out + self._due())

    def poll(self, wait: float) -> bytes:
        now = self._clock.monotonic()
        if self._outbox and self._outbox[0][0] <= now + wait:
            self._clock.advance(max(0.0, self._outbox[0][0] - now))
            return self._due()
        self._clock.advance(wait)
        return b""

    def _due(self) -> bytes:
        out = bytearray()
        while self._outbox and self._outbox[0][0] <= self._clock.monotonic():
            _, command, frame = self._outbox.pop(0)
            out += self._emit(command, frame)
        return bytes(out)

    def _emit(self, command: int, frame: bytes) -> bytes:
        self._unacked = (command, frame)
        if _take(self._garble, command):
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def _on_command(self, frame: p.CommandFrame) -> bytes:
        command = frame.command
        self.commands_received += 1
        if _take(self._mute, command):
            log.debug("lcdm emulator: muted %s", p.command_name(command))
            return b""
        if _take(self._nak, command):
            return bytes([p.NAK])
        self._outbox.clear()  # a new command supersedes an answer not yet sent
        self._unacked = None
        armed, self._armed = self._armed, False
        injected = next((e for e in self._errors if e[1] in (None, command)), None)
        if injected is not None:
            self._errors.remove(injected)
        if command == p.Command.RESET:
            self.fault = 0 if injected is None else self.fault
            return bytes([p.ACK])
        error, params, delay = self._execute(frame, injected[0] if injected else 0, armed)
        response = p.encode_response(command, error, params)
        self._outbox.append((self._clock.monotonic() + delay, command, response))
        return bytes([p.ACK])

    # -- the mechanics ----------------------------------------------------------------------

    def _execute(
        self, frame: p.CommandFrame, injected: int, armed: bool
    ) -> tuple[int, bytes, float]:
        command = frame.command
        if command == p.Command.STATUS:
            self._armed = bool(self._exit)
            return injected or self.fault, p.encode_status(self._report()), 0.0
        if injected:
            zero = self._counts({}, {})
            if command in (p.Command.DISPENSE, p.Command.TEST_DISPENSE, p.Command.PURGE):
                self._last_op = (command, injected, zero)
                return injected, p.encode_counts(zero), 0.0
            return injected, b"", 0.0
        if command in (p.Command.DISPENSE, p.Command.TEST_DISPENSE):
            return self._dispense(command, frame.params)
        if command == p.Command.PURGE:
            swept = self.notes.retract()
            self._last_op = (command, 0, self._counts({}, swept))
            return 0, p.encode_counts(self._last_op[2]), swept.total() * self.seconds_per_note
        if command == p.Command.LAST_STATUS:
            if armed and self._exit:
                self._customer_reaches()
            last_cmd, error, counts = self._last_op or (0x20, 0, self._counts({}, {}))
            return error, bytes([last_cmd]) + p.encode_counts(counts), 0.0
        if command == p.Command.SENSOR_DIAG:
            return self._sensor_diag(frame.params)
        return BAD_COMMAND, b"", 0.0

    def _report(self) -> p.StatusReport:
        sensors = []
        for i in range(1, p.POSITIONS + 1):
            slot = self._slots.get(i)
            sensors.append(
                p.PositionSensors(slot is not None and slot.present, bool(slot and slot.near_end))
            )
        return p.StatusReport(bool(self._exit), not self.reject_tray, tuple(sensors))

    def _counts(
        self, exits: Mapping[int, int], rejects: Mapping[int, int]
    ) -> tuple[p.PositionCount, ...]:
        return tuple(
            p.PositionCount(
                exits.get(i, 0), rejects.get(i, 0), i in self._slots and self._slots[i].present
            )
            for i in range(1, p.POSITIONS + 1)
        )

    def _dispense(self, command: int, params: bytes) -> tuple[int, bytes, float]:
        try:
            quantities = p.decode_dispense(params)
        except RemoteProtocolError:
            return BAD_PARAMETER, p.encode_counts(self._counts({}, {})), 0.0
        exits: Mapping[int, int] = {}
        rejects: Mapping[int, int] = {}
        wanted = {i: q for i, q in enumerate(quantities, start=1) if q}
        if self.fault:
            error = self.fault
        elif any(i not in self._slots or not self._slots[i].present for i in wanted):
            error = NO_CASSETTE
        elif not self.reject_tray:
            error = NO_REJECT_TRAY
        elif sum(wanted.values()) > MAX_NOTES:
            error = TOO_MANY_NOTES
        else:
            to_exit = command == p.Command.DISPENSE
            exits, rejects, error = self.notes.pick(
                wanted, to_stacker=to_exit, max_rejects=MAX_REJECTS
            )
            if error and p.ERROR_CODES[error].latches:
                self.fault = error
        counts = self._counts(exits, rejects)
        self._last_op = (command, error, counts)
        picks = sum(exits.values()) + sum(rejects.values())
        return error, p.encode_counts(counts, reserved_tail=True), picks * self.seconds_per_note

    def _sensor_diag(self, params: bytes) -> tuple[int, bytes, float]:
        """Five notes from cassette POS into the reject tray, as on the real device."""
        if len(params) != 1 or not 0x31 <= params[0] <= 0x30 + p.POSITIONS:
            return BAD_PARAMETER, b"", 0.0
        slot = self._slots.get(params[0] - 0x30)
        if slot is None or not slot.present:
            return NO_CASSETTE, b"", 0.0
        n = min(5, slot.count)
        for _ in range(n):
            self.notes.take(slot)
        self.notes.rejected[params[0] - 0x30] += n
        return 0, bytes([0x60, 0x70, 0x30, p.OFFSET + n]), n * self.seconds_per_note

    def take_cash(self) -> int:
        """A person takes the notes waiting at the exit; how many there were."""
        count = sum(self._exit.values())
        self.notes.handed_out.update(self._exit)
        self._exit.clear()
        return count

    def _customer_reaches(self) -> None:
        if self.hand_operated:
            return  # the notes wait at the exit for take_cash(), or the terminal's timeout
        if self.notes.customer_reaches():
            log.debug("lcdm emulator: the customer took the cash")
        else:
            log.debug("lcdm emulator: the customer leaves the cash at the exit")


def _take(queue: list[int | None], command: int) -> bool:
    """Consume the first queued fault that applies to ``command``."""
    for i, target in enumerate(queue):
        if target is None or target == command:
            del queue[i]
            return True
    return False
