"""GPS receiver speaking NMEA 0183 over a serial line (``/dev/ttyUSB0``, a pty, ``sim://``).

Why it is shaped this way: a receiver talks on its own, once a second, whether anyone
listens or not. So :meth:`NmeaGps.fix` does not ask; it drains what the port has (at
most ``max_read`` bytes and a few ``read_timeout`` waits, so a call never hangs on a
chattering or garbled line), feeds it through the no-I/O :class:`NmeaStream` and
:class:`FixTracker`, and answers from the latest fix.

Age: a fix is as old as the older of (a) the time since we received it, on the injected
clock - a receiver that went silent makes its last fix stale - and (b) the time since the
receiver says it was taken - a receiver stuck repeating an old solution does too.

A port that disappears (USB receiver unplugged) makes the call raise
:class:`DeviceUnavailable` and the status OFFLINE; the next call tries to reopen it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import serial

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.gps.base import Fix, Gps
from terminal.drivers.gps.nmea_stream import MAX_LINE, FixTracker, NmeaStream, StreamCounters
from terminal.drivers.serial_port import open_port
from terminal.errors import DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)

_BLOCKING_READS = 3  # waits of read_timeout per call, at most
_LISTEN = 2.0  # seconds info() listens for a first report: receivers talk once a second


class NmeaGps(Gps):
    """The real driver; the contract suite runs it against :mod:`sim.devices.gps`."""

    blocking = True  # waits on a serial port

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        baudrate: int = 9600,
        max_age: float = 60.0,
        read_timeout: float = 0.2,
        max_read: int = 8192,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__()
        if not url:
            raise ConfigError("config", "devices.gps.url", "a serial port URL is required")
        if baudrate <= 0 or max_age <= 0 or read_timeout < 0 or max_read < 1:
            raise ConfigError(
                "config",
                "devices.gps",
                "baudrate, max_age and max_read must be positive, read_timeout >= 0",
            )
        self.url = url
        self.baudrate = baudrate
        self.max_age = max_age
        self.read_timeout = read_timeout
        self.max_read = max_read
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._stream = NmeaStream(max_line)
        self._tracker = FixTracker(self._clock)
        self._port: serial.SerialBase | None = None
        self._lost = False  # the port went away while open; reopen on the next call
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"NmeaGps({self.url!r}, {self.baudrate} baud)"

    @property
    def counters(self) -> StreamCounters:
        """Sentences used, checksum errors, ignored sentences, noise ... (a copy)."""
        return dataclasses.replace(self._stream.counters)

    @property
    def last_fix(self) -> Fix | None:
        """What the receiver last reported, even "no fix" or stale (for diagnostics)."""
        return self._tracker.current

    # -- Device hooks -------------------------------------------------------------------------

    def _do_open(self) -> None:
        self._port = self._open_port()

    def _do_close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("gps: error closing %s: %s", self.url, exc)

    def _do_status(self) -> DeviceStatus:
        """OFFLINE without a port, DEGRADED without a current fix: location unknown."""
        try:
            self._pump(wait=False)
        except DeviceUnavailable:
            return DeviceStatus.OFFLINE
        fix = self._tracker.current
        if fix is None or not fix.valid or self.age(fix) > self.max_age:
            return DeviceStatus.DEGRADED
        return DeviceStatus.OK

    def _do_fix(self) -> Fix | None:
        self._pump(wait=True)
        return self._tracker.current

    def _do_info(self) -> dict[str, InfoValue]:
        """Reads what the receiver says now, listening up to two seconds for its first
        report; one that sends nothing at all in that time raises :class:`DeviceTimeout`."""
        deadline = self._clock.monotonic() + _LISTEN
        self._pump(wait=True)
        while self._tracker.current is None:
            before = self._clock.monotonic()
            if before >= deadline:
                break
            self._pump(wait=True)
            if self._clock.monotonic() <= before:
                self._clock.advance(self.read_timeout * _BLOCKING_READS)  # a manual clock
        if self._tracker.current is None and not self._heard():
            raise DeviceTimeout(
                self.kind, f"receiver silent: nothing on {self.url} in {_LISTEN:g} s"
            )
        info: dict[str, InfoValue] = {"port": self.url, "baudrate": self.baudrate}
        if self._stream.talkers:
            info["talker"] = ", ".join(sorted(self._stream.talkers))
        info.update(self._fix_info(self._tracker.current))
        return info

    def _do_counter_values(self) -> dict[str, int]:
        return dataclasses.asdict(self._stream.counters)

    def _do_last_error(self) -> str | None:
        return self._last_error

    def _heard(self) -> bool:
        """Any byte at all came in (a sentence, a bad one, noise)."""
        return self._stream.buffered > 0 or any(dataclasses.astuple(self._stream.counters))

    def _now(self) -> dt.datetime:
        return self._clock.now()

    def age(self, fix: Fix) -> float:
        age = super().age(fix)
        received = self._tracker.received_at
        if received is not None and fix == self._tracker.current:
            age = max(age, self._clock.monotonic() - received)
        return age

    # -- the port -----------------------------------------------------------------------------

    def _open_port(self) -> serial.SerialBase:
        return open_port(self.url, self.kind, baudrate=self.baudrate, timeout=self.read_timeout)

    def _ensure_port(self) -> serial.SerialBase:
        if self._port is None:
            if not self._lost:
                raise DeviceUnavailable(self.kind, "device is not open")
            self._port = self._open_port()  # raises DeviceUnavailable while still gone
            self._lost = False
            log.info("gps: %s is back", self.url)
        return self._port

    def _pump(self, wait: bool) -> None:
        """Read what the port has, bounded, and feed it to the tracker."""
        port = self._ensure_port()
        budget, waits = self.max_read, _BLOCKING_READS if wait else 0
        try:
            while budget > 0:
                pending = port.in_waiting
                if pending <= 0:
                    # Wait for more only to start a call, or to finish a sentence begun.
                    if waits <= 0 or (budget < self.max_read and not self._stream.buffered):
                        break
                    waits -= 1
                    pending = 1
                data = port.read(min(pending, budget))
                if not data:
                    break
                budget -= len(data)
                for report in self._stream.feed(data):
                    self._tracker.update(report)
        except (serial.SerialException, OSError) as exc:
            self._port_lost(port, exc)
            raise DeviceUnavailable(self.kind, f"serial port {self.url!r} failed: {exc}") from exc

    def _port_lost(self, port: serial.SerialBase, exc: Exception) -> None:
        log.warning("gps: lost %s (%s); will try to reopen", self.url, exc)
        self._last_error = f"{self.kind}: serial port {self.url!r} failed: {exc}"
        self._port, self._lost = None, True
        try:
            port.close()
        except (serial.SerialException, OSError) as close_exc:
            log.debug("gps: error closing %s: %s", self.url, close_exc)
