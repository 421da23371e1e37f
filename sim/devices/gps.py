"""Emulator of an NMEA 0183 GPS receiver, for the real :class:`NmeaGps` driver.

Why it exists: the driver's own code (framing, checksums, fix tracking, staleness) must
run in CI, so the simulated sky sits on the far side of the wire, behind ``sim://NAME`` or
a pty. Its scripting API is :class:`~terminal.drivers.gps.sim.SimGps`'s (``set_fix``,
``lose_fix``), so the GPS contract suite drives both the same way.

Output: RMC, GGA and GSA once per ``interval`` of the injected clock. Modes: a fixed
position (``set_fix``; ``fix_time`` freezes the reported time, as a stuck receiver
repeating an old solution would), a track of waypoints driven at a constant speed
(``set_track``), or the replay of a recorded log (``replay``) at ``speed`` times real
time, its timestamps shifted to "now" unless ``restamp=False``.

Time: :meth:`poll` first returns whatever is due without moving the clock (the data was
already waiting in the UART); with nothing due it advances the clock up to ``wait`` - to
the next epoch if that comes sooner. Epochs missed by a jump of the clock collapse into
the latest one. A scripted change (``set_fix``/``lose_fix``) is reported at once.

Faults for tests: :meth:`bad_checksum_next`, :meth:`noise` (bytes between sentences of
the next burst), :meth:`silence` / :meth:`resume`, and the talker (GP/GN/GL/BD).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import threading
from collections.abc import Sequence
from functools import reduce
from pathlib import Path

from atm_common.clock import Clock, SystemClock

log = logging.getLogger(__name__)

TALKERS = ("GP", "GN", "GL", "BD")
_FIRST_PRN = {"GP": 1, "GN": 1, "GL": 65, "BD": 201}
_RMC_MODE = {0: "N", 1: "A", 2: "D", 4: "R", 5: "F", 6: "E"}
_KNOTS_PER_MPS = 3600 / 1852
_EARTH_RADIUS_M = 6_371_000.0
_FRAME = re.compile(rb"^\$([\x20-\x29\x2B-\x7E]+)\*([0-9A-F]{2})$")
_TIMED = re.compile(r"^[A-Z]{2}(GGA|RMC),(\d\d)(\d\d)(\d\d(?:\.\d+)?),")

Waypoint = tuple[float, float] | tuple[float, float, float | None]
Point = tuple[float, float, float | None]


def checksum(body: str) -> int:
    """XOR of the characters between ``$`` and ``*``."""
    return reduce(lambda acc, ch: acc ^ ord(ch), body, 0)


def sentence(body: str, corrupt: bool = False) -> bytes:
    """``$body*HH`` (no line end); ``corrupt`` sends a checksum that cannot match."""
    value = checksum(body) ^ (0x5A if corrupt else 0)
    return f"${body}*{value:02X}".encode("ascii")


def _body(line: bytes) -> str | None:
    """The body of a well-formed sentence with a correct checksum, else None."""
    match = _FRAME.match(line)
    if match is None or checksum(match.group(1).decode()) != int(match.group(2), 16):
        return None
    return match.group(1).decode()


def _dm(value: float, degree_digits: int) -> str:
    """Degrees as NMEA ``(d)ddmm.mmmmm`` (u-blox precision)."""
    degrees = int(abs(value))
    minutes = round((abs(value) - degrees) * 60, 5)
    if minutes >= 60:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{degree_digits}d}{minutes:08.5f}"


def _hms(when: dt.datetime) -> str:
    return f"{when:%H%M%S}.{when.microsecond // 10_000:02d}"


def _check_position(lat: float, lon: float) -> None:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"position out of range: {lat}, {lon}")


@dataclasses.dataclass(frozen=True)
class _Sky:
    """What the receiver reports at one epoch."""

    lat: float | None
    lon: float | None
    alt: float | None = None
    quality: int = 1
    satellites: int | None = 8
    hdop: float | None = 0.9
    knots: float = 0.0
    course: float | None = None


def _distance(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def _bearing(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclasses.dataclass
class _Track:
    """Waypoints driven at ``speed`` m/s from ``start``; interpolated linearly per leg."""

    points: list[Point]
    speed: float
    loop: bool
    start: float
    sky: _Sky

    def at(self, now: float) -> _Sky:
        legs = list(zip(self.points, self.points[1:], strict=False))
        lengths = [_distance(a, b) for a, b in legs]
        total = sum(lengths)
        travelled = max(0.0, now - self.start) * self.speed
        moving = total > 0 and (self.loop or travelled < total)
        travelled = travelled % total if moving else total
        for (a, b), length in zip(legs, lengths, strict=True):
            if moving and travelled < length:
                f = travelled / length
                alt = None if a[2] is None or b[2] is None else a[2] + f * (b[2] - a[2])
                return dataclasses.replace(
                    self.sky,
                    lat=a[0] + f * (b[0] - a[0]),
                    lon=a[1] + f * (b[1] - a[1]),
                    alt=alt,
                    knots=self.speed * _KNOTS_PER_MPS,
                    course=_bearing(a, b),
                )
            travelled -= length
        last = self.points[-1]
        return dataclasses.replace(self.sky, lat=last[0], lon=last[1], alt=last[2])


def _seconds_of_day(body: str | None) -> float | None:
    match = _TIMED.match(body or "")
    if match is None:
        return None
    hours, minutes, seconds = match.group(2, 3, 4)
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def load_log(path: str | Path) -> list[tuple[float, list[bytes]]]:
    """A log as epochs: (seconds since its first epoch, the epoch's lines, no line ends).

    An epoch starts at each GGA/RMC with a new time; untimed lines (GSA, GSV, a corrupted
    sentence) go with the epoch they follow. Times may cross midnight.
    """
    epochs: list[tuple[float, list[bytes]]] = []
    pending: list[bytes] = []
    offset, epoch_time = 0.0, None
    for raw in Path(path).read_bytes().split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        when = _seconds_of_day(_body(line))
        if when is not None and when != epoch_time:
            if epoch_time is not None:
                delta = when - epoch_time
                offset += max(0.0, delta + 86400 if delta < -43200 else delta)
            epoch_time = when
            epochs.append((offset, pending))
            pending = []
        (epochs[-1][1] if epochs else pending).append(line)
    if pending:
        epochs.append((0.0, pending))
    return epochs


def _restamp(line: bytes, when: dt.datetime) -> bytes:
    """Move a good GGA/RMC to ``when`` (time, and RMC date); leave anything else alone."""
    body = _body(line)
    if _seconds_of_day(body) is None or body is None:
        return line
    fields = body.split(",")
    fields[1] = _hms(when)
    if fields[0].endswith("RMC") and len(fields) > 9 and fields[9]:
        fields[9] = f"{when:%d%m%y}"
    return sentence(",".join(fields))


@dataclasses.dataclass
class _Replay:
    epochs: list[tuple[float, list[bytes]]]
    speed: float
    restamp: bool
    start: float  # clock.monotonic() when the replay began
    start_wall: dt.datetime
    index: int = 0

    def next_at(self) -> float | None:
        if self.index >= len(self.epochs):
            return None
        return self.start + self.epochs[self.index][0] / self.speed

    def due(self, now: float) -> list[bytes]:
        lines: list[bytes] = []
        while (at := self.next_at()) is not None and at <= now:
            offset, raw = self.epochs[self.index]
            when = self.start_wall + dt.timedelta(seconds=offset / self.speed)
            lines.extend(_restamp(line, when) if self.restamp else line for line in raw)
            self.index += 1
        return lines


class GpsEmulator:
    """A receiver whose sky is a script; implements the :class:`Emulator` protocol."""

    def __init__(
        self,
        clock: Clock | None = None,
        lat: float = 50.1109,
        lon: float = 8.6821,
        alt: float | None = None,
        quality: int = 1,
        satellites: int = 8,
        hdop: float = 0.9,
        fix_time: dt.datetime | None = None,
        talker: str = "GP",
        interval: float = 1.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.RLock()  # a PtyBridge thread polls while a test scripts
        self.interval = interval
        self._origin = self._clock.monotonic()
        self._next_due = self._origin  # the first report goes out at once
        self._force = False
        self._silent = False
        self._bad_checksums = 0
        self._noise = b""
        self._talker = "GP"
        self.talker = talker
        self._sky = _Sky(lat, lon)
        self._fix_time: dt.datetime | None = None
        self._track: _Track | None = None
        self._replay: _Replay | None = None
        self.set_fix(lat, lon, alt, quality, satellites, hdop, fix_time)

    # -- scripting (SimGps's API) -------------------------------------------------------------

    def set_fix(
        self,
        lat: float,
        lon: float,
        alt: float | None = None,
        quality: int = 1,
        satellites: int | None = 8,
        hdop: float | None = 0.9,
        fix_time: dt.datetime | None = None,
    ) -> None:
        """Report this fixed position from now on; its time is frozen at ``fix_time`` if given."""
        _check_position(lat, lon)
        with self._lock:
            self._sky = _Sky(lat, lon, alt, quality, satellites, hdop)
            self._fix_time = fix_time
            self._track = self._replay = None
            self._force = True

    def lose_fix(self) -> None:
        """Keep talking, but report "no fix" (GGA quality 0, RMC status V, GSA mode 1)."""
        with self._lock:
            self._sky = _Sky(None, None, quality=0, satellites=0, hdop=99.99)
            self._fix_time = None
            self._track = self._replay = None
            self._force = True

    def set_track(
        self,
        waypoints: Sequence[Waypoint],
        speed: float,
        loop: bool = False,
        quality: int = 1,
        satellites: int = 8,
        hdop: float = 0.9,
    ) -> None:
        """Drive along ``waypoints`` (lat, lon[, alt]) at ``speed`` m/s, starting now."""
        points: list[Point] = [(w[0], w[1], w[2] if len(w) > 2 else None) for w in waypoints]
        if not points or speed < 0:
            raise ValueError("a track needs at least one waypoint and a speed >= 0")
        for lat, lon, _ in points:
            _check_position(lat, lon)
        sky = _Sky(points[0][0], points[0][1], points[0][2], quality, satellites, hdop)
        with self._lock:
            self._track = _Track(points, speed, loop, self._clock.monotonic(), sky)
            self._replay, self._fix_time, self._force = None, None, True

    def replay(self, path: str | Path, speed: float = 1.0, restamp: bool = True) -> None:
        """Play a recorded log from now, ``speed`` times faster than it was recorded."""
        if speed <= 0:
            raise ValueError("replay speed must be positive")
        epochs = load_log(path)
        with self._lock:
            start = self._clock.monotonic()
            self._replay = _Replay(epochs, speed, restamp, start, self._clock.now())
            self._track = None
        log.debug("gps emulator: replaying %d epochs from %s at x%g", len(epochs), path, speed)

    # -- faults -------------------------------------------------------------------------------

    @property
    def talker(self) -> str:
        return self._talker

    @talker.setter
    def talker(self, value: str) -> None:
        if value not in TALKERS:
            raise ValueError(f"unknown talker {value!r} (known: {', '.join(TALKERS)})")
        self._talker = value

    def bad_checksum_next(self, n: int = 1) -> None:
        """The next ``n`` sentences go out with a wrong checksum."""
        with self._lock:
            self._bad_checksums += n

    def noise(self, data: bytes) -> None:
        """Line noise: ``data`` goes out between two sentences of the next report."""
        with self._lock:
            self._noise += data

    def silence(self) -> None:
        """Stop talking (antenna cable cut, receiver hung); epochs pass unsent."""
        with self._lock:
            self._silent = True

    def resume(self) -> None:
        with self._lock:
            self._silent = False
            self._force = self._replay is None

    # -- the wire (Emulator protocol) ---------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Configuration commands ($PUBX, $PMTK ...) are accepted and ignored."""
        log.debug("gps emulator: ignoring %d bytes from the terminal", len(data))
        return b""

    def poll(self, wait: float) -> bytes:
        with self._lock:
            out = self._due()
            if out or wait <= 0:
                return out
            step = wait
            next_at = self._next_at()
            if next_at is not None and not self._silent:
                step = min(wait, max(0.0, next_at - self._clock.monotonic()))
            if step > 0:
                self._clock.advance(step)
            return self._due()

    def _next_at(self) -> float | None:
        if self._replay is not None:
            return self._replay.next_at()
        return self._origin if self._force else self._next_due

    def _due(self) -> bytes:
        now = self._clock.monotonic()
        if self._replay is not None:
            lines = self._replay.due(now)
            return b"" if self._silent else self._frame(lines)
        if not (self._force or now >= self._next_due):
            return b""
        self._force = False
        self._next_due = self._origin + (math.floor((now - self._origin) / self.interval) + 1) * (
            self.interval
        )
        if self._silent:
            return b""
        sky = self._track.at(now) if self._track is not None else self._sky
        return self._frame(self._report(sky, self._fix_time or self._clock.now()))

    def _frame(self, lines: list[bytes]) -> bytes:
        out = bytearray()
        for i, line in enumerate(lines):
            if self._bad_checksums > 0:
                self._bad_checksums -= 1
                body = _body(line)
                line = sentence(body, corrupt=True) if body is not None else line
            out += line + b"\r\n"
            if i == 0 and self._noise:
                out += self._noise
                self._noise = b""
        return bytes(out)

    def _report(self, sky: _Sky, when: dt.datetime) -> list[bytes]:
        t, hms = self._talker, _hms(when)
        fixed = sky.lat is not None and sky.lon is not None and sky.quality > 0
        if sky.lat is not None and sky.lon is not None:
            pos = (
                f"{_dm(sky.lat, 2)},{'N' if sky.lat >= 0 else 'S'},"
                f"{_dm(sky.lon, 3)},{'E' if sky.lon >= 0 else 'W'}"
            )
        else:
            pos = ",,,"
        course = f"{sky.course:.2f}" if sky.course is not None else ""
        mode = _RMC_MODE.get(sky.quality, "A") if fixed else "N"
        sats = f"{sky.satellites:02d}" if sky.satellites is not None else ""
        hdop = f"{sky.hdop:.2f}" if sky.hdop is not None else ""
        alt = f"{sky.alt:.1f}" if sky.alt is not None else ""
        used = min(12, sky.satellites or 0) if fixed else 0
        prns = [f"{_FIRST_PRN[t] + i:02d}" for i in range(used)] + [""] * (12 - used)
        dops = [f"{sky.hdop * k:.2f}" if sky.hdop is not None else "" for k in (1.5, 1.0, 1.2)]
        return [
            sentence(
                f"{t}RMC,{hms},{'A' if fixed else 'V'},{pos},{sky.knots:.3f},{course},"
                f"{when:%d%m%y},,,{mode}"
            ),
            sentence(f"{t}GGA,{hms},{pos},{sky.quality},{sats},{hdop},{alt},M,,M,,"),
            sentence(f"{t}GSA,A,{3 if fixed else 1},{','.join(prns)},{','.join(dops)}"),
        ]
