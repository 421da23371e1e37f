"""Puloon LCDM-4000 style cash dispenser over a serial line (9600 baud, 8E1).

The protocol bytes live in :mod:`~terminal.drivers.dispenser.lcdm_protocol`; this module
is the thin transport around them: write a command, wait for ACK (resending on silence or
NAK), wait for the response, ACK it (NAK a bad one and wait for the resend), take the
closing EOT. Every deadline is measured on the injected clock and every wait is a port
read with a timeout, so the same code runs against ``/dev/ttyUSB0``, a pty and the
in-process ``sim://`` emulator on a manual clock, where waiting costs no real time.

A command is resent only until it is acknowledged: after the ACK the device may already
be moving notes, and a second DISPENSE would pay twice. When a DISPENSE response is lost
after the ACK, the driver asks LAST_STATUS for the counts instead.

Note counts: the LCDM reports cassette presence and near-end sensors, never how many
notes are inside. The driver therefore starts from the configured ``counts`` (entered at
replenishment) and subtracts what each DISPENSE reports as picked (exit + reject counts).
Persisting them across restarts is the terminal's job (see :meth:`replenish`).

A cassette whose TYPE says "removed" is left out of :meth:`cassettes` (so no mix uses it)
and makes the status DEGRADED; its count is kept for when it comes back.

The line is 9600 baud 8E1 by default; ``parity`` is an option because a Linux pty (the
simulator's :class:`~sim.devices.pty.PtyBridge`) refuses parity settings (EINVAL), so pty
runs use ``"N"``.

Presenting: the LCDM has no shutter; notes wait at the exit until the customer pulls them.
``present()`` checks (STATUS) that notes are at the exit, asks LAST_STATUS what the last
dispense put there, then polls STATUS until the exit sensor clears or ``take_timeout``
passes. ``retract()`` sends PURGE, which sweeps what is left at the exit into the reject
tray, and returns how many notes it moved (the manual warns that a note already held in
the exit mouth may be pushed out instead: field tests on real hardware should confirm
this model). SENSOR_DIAG is not used for polling: on the real device it test-dispenses
five notes into the reject tray.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence

import serial

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.dispenser import lcdm_protocol as p
from terminal.drivers.dispenser.base import Cassette, Dispenser, DispenseResult
from terminal.drivers.serial_port import open_port
from terminal.errors import DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)

_LINK_ERRORS = (DeviceTimeout, RemoteProtocolError)
_OFFLINE_ERRORS = (DeviceTimeout, RemoteProtocolError, DeviceUnavailable)


class LcdmDispenser(Dispenser):
    """An LCDM-4000 with up to four cassettes whose values the terminal configures."""

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        *,
        denominations: Sequence[int],
        counts: Sequence[int],
        baudrate: int = 9600,
        parity: str = "E",
        response_timeout: float = 60.0,
        ack_timeout: float = 1.0,
        retries: int = 3,
        near_end_threshold: int = 20,
        poll_interval: float = 0.5,
    ) -> None:
        super().__init__()
        key = "devices.dispenser"
        if not 1 <= len(denominations) <= p.POSITIONS or any(d <= 0 for d in denominations):
            raise ConfigError("config", f"{key}.denominations", "1 to 4 values > 0 (minor units)")
        if len(counts) != len(denominations) or any(c < 0 for c in counts):
            raise ConfigError("config", f"{key}.counts", "one count >= 0 per denomination")
        if retries < 0 or min(response_timeout, ack_timeout, poll_interval) <= 0:
            raise ConfigError("config", key, "timeouts must be > 0 and retries >= 0")
        self.url = url
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._denominations = {i: int(d) for i, d in enumerate(denominations, start=1)}
        self._counts = {i: int(c) for i, c in enumerate(counts, start=1)}
        self.baudrate = baudrate
        self.parity = parity
        self.response_timeout = response_timeout
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.near_end_threshold = near_end_threshold
        self.poll_interval = poll_interval
        self._port: serial.SerialBase | None = None
        self._decoder = p.ResponseDecoder()
        self._events: collections.deque[p.Event] = collections.deque()
        self._fresh: tuple[int, p.StatusReport] | None = None  # STATUS just read, not yet used
        self._reported_error = 0

    def __repr__(self) -> str:
        return f"LcdmDispenser({self.url!r}, counts={self._counts})"

    # -- life cycle and extras ----------------------------------------------------------------

    def _do_open(self) -> None:
        self._port = open_port(
            self.url,
            self.kind,
            baudrate=self.baudrate,
            bytesize=8,
            parity=self.parity,
            stopbits=1,
            timeout=self.ack_timeout,
        )

    def _do_close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def reset(self) -> None:
        """Send RESET: the device reboots and forgets a latched fault (no response comes)."""
        self._require_open()
        self._send(p.Command.RESET)

    def replenish(self, counts: Sequence[int]) -> None:
        """Set the note counts after an engineer refilled (or swapped) the cassettes."""
        if len(counts) != len(self._denominations) or any(c < 0 for c in counts):
            raise LocalProtocolError(f"dispenser: need {len(self._denominations)} counts >= 0")
        self._counts = {i: int(c) for i, c in enumerate(counts, start=1)}
        log.info("dispenser counts set to %s", self._counts)

    # -- Dispenser hooks ------------------------------------------------------------------------

    def _do_status(self) -> DeviceStatus:
        try:
            error, report = self._status()
        except _OFFLINE_ERRORS as exc:
            log.warning("dispenser status unknown: %s", exc)
            return DeviceStatus.OFFLINE
        if error or report.reject_tray_missing:
            return DeviceStatus.FAULT
        cassettes = self._cassettes(report)
        if len(cassettes) < len(self._denominations) or any(c.near_end for c in cassettes):
            return DeviceStatus.DEGRADED
        return DeviceStatus.OK

    def _do_cassettes(self) -> list[Cassette]:
        _, report = self._status()
        return self._cassettes(report)

    def _do_info(self) -> dict[str, InfoValue]:
        """The LCDM has no identity command: its port, the configured denominations and
        what STATUS reports (cassette positions present, notes at the exit, reject tray)."""
        _, report = self._status()
        return {
            "port": self.url,
            "denominations": tuple(self._denominations.values()),
            "cassettes_present": tuple(
                i for i, s in enumerate(report.positions, start=1) if s.present
            ),
            "notes_at_exit": report.exit_blocked,
            "reject_tray": "missing" if report.reject_tray_missing else "in place",
        }

    def _do_counter_values(self) -> dict[str, int]:
        """Notes left per cassette, as the driver tracks them (the LCDM cannot count)."""
        return {f"cassette{i}": n for i, n in self._counts.items()}

    def _do_last_error(self) -> str | None:
        """The error STATUS last reported latched, if any."""
        return str(p.device_fault(self._reported_error)) if self._reported_error else None

    def _do_dispense(self, mix: Mapping[int, int]) -> DispenseResult:
        error, report = self._fresh if self._fresh is not None else self._status()
        if error:
            raise p.device_fault(error, p.Command.STATUS)
        if report.exit_blocked:
            raise LocalProtocolError(
                "dispenser: notes at the exit (stacker not empty); present or retract first"
            )
        quantities = [0] * p.POSITIONS
        for index, n in mix.items():
            if index not in self._denominations or n < 0:
                raise LocalProtocolError(f"dispenser: bad mix entry cassette {index} x {n}")
            quantities[index - 1] = n
        self._send(p.Command.DISPENSE, p.encode_dispense(quantities))
        try:
            response = self._await_response(p.Command.DISPENSE)
            counts = p.decode_counts(response.params)
        except _LINK_ERRORS as exc:
            response, counts = self._recover(exc)
        moved: dict[int, int] = {}
        for index in self._denominations:
            c = counts[index - 1]
            self._counts[index] = max(0, self._counts[index] - c.picked)
            if c.exit:
                moved[index] = c.exit
            if c.exit > quantities[index - 1]:
                log.error(
                    "dispenser: cassette %d gave %d notes, asked %d",
                    index,
                    c.exit,
                    quantities[index - 1],
                )
        fault = p.device_fault(response.error, p.Command.DISPENSE) if response.error else None
        return DispenseResult(0, moved, dict(self._denominations), fault)

    def _recover(
        self, exc: DeviceTimeout | RemoteProtocolError
    ) -> tuple[p.Response, tuple[p.PositionCount, ...]]:
        """The DISPENSE was acknowledged but its answer is lost: ask LAST_STATUS."""
        log.error("dispenser: DISPENSE answer lost (%s); asking LAST_STATUS", exc)
        try:
            last = self._exchange(p.Command.LAST_STATUS)
            if not last.params or last.params[0] != p.Command.DISPENSE:
                raise RemoteProtocolError("dispenser: LAST_STATUS does not describe the DISPENSE")
            counts = p.decode_counts(last.params[1:])
        except _LINK_ERRORS as second:
            log.critical("dispenser: note counts unknown after a lost DISPENSE: %s", second)
            raise exc from second
        return last, counts

    def _do_present(self, take_timeout: float) -> bool:
        _, report = self._status()
        if not report.exit_blocked:
            raise LocalProtocolError("dispenser: nothing at the exit to present")
        last = self._exchange(p.Command.LAST_STATUS)  # informative; opens the customer's turn
        try:
            waiting = sum(c.exit for c in p.decode_counts(last.params[1:]))
            log.info("dispenser: %d note(s) wait at the exit", waiting)
        except RemoteProtocolError as exc:
            log.debug("dispenser: LAST_STATUS unreadable (%s)", exc)
        deadline = self._clock.monotonic() + take_timeout
        while True:
            _, report = self._status()
            if not report.exit_blocked:
                log.info("dispenser: cash taken")
                return True
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                log.warning("dispenser: cash not taken within %.1f s", take_timeout)
                return False
            self._idle(min(self.poll_interval, remaining))

    def _do_notes_pending(self) -> bool:
        return self._status()[1].exit_blocked

    def _do_retract(self) -> int:
        response = self._exchange(p.Command.PURGE)
        swept = sum(c.rejected for c in p.decode_counts(response.params))
        if response.error:
            raise p.device_fault(response.error, p.Command.PURGE)
        log.info("dispenser: purged %d note(s) into the reject tray", swept)
        return swept

    # -- field-engineer diagnostics ----------------------------------------------------------

    def test_dispense(self, quantities: Mapping[int, int]) -> dict[int, dict[str, int]]:
        """TEST_DISPENSE: pick notes straight into the reject tray, none to the customer.

        Returns, per cassette, the notes picked and rejected; counts are kept in step.
        """
        self._require_open()
        wanted = [0] * p.POSITIONS
        for index, n in quantities.items():
            if index not in self._denominations or not 0 <= n <= 10:
                raise LocalProtocolError(f"dispenser: bad test dispense {index} x {n}")
            wanted[index - 1] = n
        response = self._exchange(p.Command.TEST_DISPENSE, p.encode_dispense(wanted))
        counts = p.decode_counts(response.params)
        out = {}
        for index in self._denominations:
            c = counts[index - 1]
            self._counts[index] = max(0, self._counts[index] - c.picked)
            out[index] = {"picked": c.picked, "rejected": c.rejected, "to_exit": c.exit}
        if response.error:
            raise p.device_fault(response.error, p.Command.TEST_DISPENSE)
        return out

    def sensor_report(self) -> dict[str, object]:
        """The STATUS sensors as plain data: exit, reject tray, each cassette position."""
        self._require_open()
        error, report = self._status()
        return {
            "latched_error": p.describe_error(error) if error else None,
            "notes_at_exit": report.exit_blocked,
            "reject_tray_missing": report.reject_tray_missing,
            "positions": [
                {"position": i, "cassette_present": s.present, "near_end": s.near_end}
                for i, s in enumerate(report.positions, start=1)
            ],
        }

    # -- helpers ----------------------------------------------------------------------------

    def _status(self) -> tuple[int, p.StatusReport]:
        """STATUS: (latched error code or 0, sensors). Never raises for a device error."""
        response = self._exchange(p.Command.STATUS)
        if response.error and len(response.params) < 1 + 4 * p.POSITIONS:
            report = p.StatusReport(False, False, (p.PositionSensors(),) * p.POSITIONS)
        else:
            report = p.decode_status(response.params)
        if response.error != self._reported_error:  # log changes, not every poll
            if response.error:
                log.warning("dispenser: status reports %s", p.device_fault(response.error))
            else:
                log.info("dispenser: status clear again")
            self._reported_error = response.error
        self._fresh = (response.error, report)
        return self._fresh

    def _cassettes(self, report: p.StatusReport) -> list[Cassette]:
        cassettes = []
        for i, denomination in self._denominations.items():
            sensors = report.positions[i - 1]
            if sensors.present:
                near_end = sensors.near_end or self._counts[i] <= self.near_end_threshold
                cassettes.append(Cassette(i, denomination, self._counts[i], near_end))
        return cassettes

    # -- the handshake ----------------------------------------------------------------------

    def _exchange(self, command: p.Command, params: bytes = b"") -> p.Response:
        """One command and its response (RESET has none: use :meth:`_send`)."""
        self._send(command, params)
        return self._await_response(command)

    def _line(self) -> serial.SerialBase:
        if self._port is None:
            raise DeviceUnavailable(self.kind, "serial port is not open")
        return self._port

    def _write(self, data: bytes) -> None:
        log.debug("dispenser -> %s", data.hex(" "))
        try:
            self._line().write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(self.kind, f"write to {self.url} failed: {exc}") from exc

    def _send(self, command: p.Command, params: bytes = b"") -> None:
        """Write ``command`` until the device ACKs it (at most ``retries`` resends)."""
        self._fresh = None
        frame = p.encode_command(command, params)
        try:
            self._line().reset_input_buffer()  # nothing said before this command matters
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(self.kind, f"{self.url}: {exc}") from exc
        self._decoder.reset()
        self._events.clear()
        heard = False
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            self._write(frame)
            deadline = self._clock.monotonic() + self.ack_timeout
            while (event := self._next_event(deadline)) is not None:
                if event is p.Control.ACK:
                    return
                heard = True
                if event is p.Control.NAK:
                    break
                log.debug("dispenser: ignoring %s while waiting for ACK", event)
            log.warning(
                "dispenser: %s not acknowledged (attempt %d/%d)", command.name, attempt, attempts
            )
        name = p.command_name(command)
        if heard:
            raise RemoteProtocolError(f"dispenser: {name} refused or garbled {attempts} times")
        raise DeviceTimeout(self.kind, f"no ACK to {name} after {attempts} attempts")

    def _await_response(self, command: p.Command) -> p.Response:
        name = p.command_name(command)
        deadline = self._clock.monotonic() + self.response_timeout
        bad: list[str] = []
        while (event := self._next_event(deadline)) is not None:
            if isinstance(event, p.Response) and event.command == command:
                self._write(bytes([p.ACK]))
                self._await_eot(command)
                return event
            if isinstance(event, p.BadFrame):
                bad.append(event.reason)
                if len(bad) > self.retries:
                    raise RemoteProtocolError(f"dispenser: no valid response to {name}: {bad}")
                if event.framed:
                    log.warning("dispenser: bad response to %s (%s); NAK", name, event.reason)
                    self._write(bytes([p.NAK]))
                    deadline = max(deadline, self._clock.monotonic() + self.ack_timeout)
            else:
                log.debug("dispenser: ignoring %s while waiting for %s", event, name)
        if bad:
            raise RemoteProtocolError(f"dispenser: no valid response to {name}: {bad}")
        raise DeviceTimeout(self.kind, f"no response to {name} within {self.response_timeout:g} s")

    def _await_eot(self, command: p.Command) -> None:
        deadline = self._clock.monotonic() + self.ack_timeout
        while (event := self._next_event(deadline)) is not None:
            if event is p.Control.EOT:
                return
            if isinstance(event, p.Response):  # our ACK was lost and it came again
                self._write(bytes([p.ACK]))
        log.warning("dispenser: no EOT after %s", command.name)

    def _idle(self, seconds: float) -> None:
        """Wait on the line (a read with a timeout), discarding anything unsolicited."""
        deadline = self._clock.monotonic() + seconds
        while (event := self._next_event(deadline)) is not None:
            log.debug("dispenser: unsolicited %s", event)

    def _next_event(self, deadline: float) -> p.Event | None:
        """The next decoded event, or None once ``deadline`` (injected clock) has passed."""
        port = self._line()
        while not self._events:
            before = self._clock.monotonic()
            remaining = deadline - before
            if remaining <= 0:
                return None
            try:
                port.timeout = remaining
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise DeviceUnavailable(self.kind, f"read from {self.url} failed: {exc}") from exc
            if data:
                log.debug("dispenser <- %s", data.hex(" "))
                self._events.extend(self._decoder.feed(data))
            elif self._clock.monotonic() <= before:
                self._clock.advance(remaining)  # the port waited; a manual clock must see it
        return self._events.popleft()
