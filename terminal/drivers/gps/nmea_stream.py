"""No-I/O NMEA 0183 core: bytes in, typed GGA/RMC/GSA reports and position fixes out.

Why it exists: a serial line delivers sentences split anywhere, with line noise between
them and the odd corrupted one. Keeping the byte handling here, away from the port (the
h11 model), lets the driver, the ``atm diag gps --replay`` command and the tests share one
parser, and lets hypothesis throw arbitrary bytes at it without a device.

:class:`NmeaStream` frames ``$...\\n`` sentences (anything outside them is noise, a line
longer than ``max_line`` is dropped so garbage cannot grow the buffer), lets pynmea2 check
the checksum and split the fields, and converts GGA/RMC/GSA from the known talkers into
frozen dataclasses with validated values (pynmea2 hands back raw strings when a field
does not convert, so the conversion is done here). :class:`FixTracker` folds the reports of
one receiver epoch into a :class:`~terminal.drivers.gps.base.Fix`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from decimal import Decimal

import pynmea2

from atm_common.clock import Clock
from terminal.drivers.gps.base import Fix

log = logging.getLogger(__name__)

# GPS, multi-constellation, GLONASS, BeiDou (and the NMEA 4.11 Galileo/BeiDou ids).
TALKERS = frozenset({"GP", "GN", "GL", "BD", "GA", "GB"})
USED_TYPES = frozenset({"GGA", "RMC", "GSA"})
# NMEA allows 82 characters; receivers with proprietary sentences go beyond, never twice.
MAX_LINE = 164

_DELIMITER = re.compile(rb"[\n$]")
_COORD = re.compile(r"^(\d{1,3})(\d\d(?:\.\d+)?)$")
_TIME = re.compile(r"^(\d\d)(\d\d)(\d\d)(\.\d+)?$")
_DATE = re.compile(r"^(\d\d)(\d\d)(\d\d)$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d*)?$")
_INT = re.compile(r"^\d+$")
_DEGREE_QUANTUM = Decimal("1e-8")  # ~1 mm: finer than any NMEA minutes field


@dataclasses.dataclass(frozen=True)
class Gga:
    """Fix data: position, altitude, quality (0 = no fix), satellites, HDOP."""

    talker: str
    time: dt.time | None
    lat: float | None
    lon: float | None
    quality: int
    satellites: int | None
    hdop: float | None
    alt: float | None


@dataclasses.dataclass(frozen=True)
class Rmc:
    """Recommended minimum: the only common sentence with a date; status V = no fix."""

    talker: str
    time: dt.time | None
    date: dt.date | None
    valid: bool
    lat: float | None
    lon: float | None


@dataclasses.dataclass(frozen=True)
class Gsa:
    """DOP and satellites used; ``fix_type`` 1 = no fix, 2 = 2D, 3 = 3D."""

    talker: str
    fix_type: int | None
    satellites: int
    hdop: float | None


Report = Gga | Rmc | Gsa


@dataclasses.dataclass
class StreamCounters:
    """What the line delivered, for diagnostics: a rising error count means a bad cable."""

    sentences: int = 0  # GGA/RMC/GSA from a known talker, used
    checksum_errors: int = 0  # wrong or missing checksum
    malformed: int = 0  # started with '$' but was not a valid sentence
    ignored: int = 0  # valid, but another type or talker (GSV, VTG, $P...)
    overlong: int = 0  # lines dropped for exceeding max_line
    noise_bytes: int = 0  # bytes outside any sentence


# -- field conversion: ValueError means "malformed sentence" ---------------------------------


def _time(value: str) -> dt.time | None:
    if not value:
        return None
    match = _TIME.match(value)
    if match is None:
        raise ValueError(f"bad time {value!r}")
    hour, minute, second = (int(g) for g in match.group(1, 2, 3))
    micro = min(999_999, int(Decimal("0" + (match.group(4) or ".0")) * 1_000_000))
    return dt.time(hour, minute, second, micro, tzinfo=dt.UTC)  # range-checked here


def _date(value: str) -> dt.date | None:
    if not value:
        return None
    match = _DATE.match(value)
    if match is None:
        raise ValueError(f"bad date {value!r}")
    day, month, year = (int(g) for g in match.group(1, 2, 3))
    return dt.date(2000 + year if year < 80 else 1900 + year, month, day)


def _coord(value: str, hemisphere: str, positive: str, negative: str, limit: int) -> float | None:
    if not value:
        return None
    match = _COORD.match(value)
    if match is None or hemisphere not in (positive, negative):
        raise ValueError(f"bad coordinate {value!r} {hemisphere!r}")
    degrees, minutes = int(match.group(1)), Decimal(match.group(2))
    if minutes >= 60:
        raise ValueError(f"minutes out of range in {value!r}")
    result = (degrees + minutes / 60).quantize(_DEGREE_QUANTUM)
    if result > limit:
        raise ValueError(f"coordinate out of range: {value!r}")
    return float(-result if hemisphere == negative else result)


def _float(value: str) -> float | None:
    if not value:
        return None
    if _NUMBER.match(value) is None:
        raise ValueError(f"bad number {value!r}")
    return float(value)


def _int(value: str) -> int | None:
    if not value:
        return None
    if _INT.match(value) is None:
        raise ValueError(f"bad integer {value!r}")
    return int(value)


def _field(msg: pynmea2.TalkerSentence, name: str) -> str:
    """The raw text of a named field ('' when the receiver sent fewer fields)."""
    index: int = type(msg).name_to_idx[name]
    data: list[str] = msg.data
    return data[index].strip() if index < len(data) else ""


def _lat_lon(msg: pynmea2.TalkerSentence) -> tuple[float | None, float | None]:
    lat = _coord(_field(msg, "lat"), _field(msg, "lat_dir"), "N", "S", 90)
    lon = _coord(_field(msg, "lon"), _field(msg, "lon_dir"), "E", "W", 180)
    if (lat is None) != (lon is None):
        raise ValueError("half a position")
    return lat, lon


def _convert(msg: pynmea2.TalkerSentence) -> Report:
    talker: str = msg.talker
    kind: str = msg.sentence_type
    if kind == "GGA":
        lat, lon = _lat_lon(msg)
        return Gga(
            talker=talker,
            time=_time(_field(msg, "timestamp")),
            lat=lat,
            lon=lon,
            quality=_int(_field(msg, "gps_qual")) or 0,
            satellites=_int(_field(msg, "num_sats")),
            hdop=_float(_field(msg, "horizontal_dil")),
            alt=_float(_field(msg, "altitude")),
        )
    if kind == "RMC":
        lat, lon = _lat_lon(msg)
        return Rmc(
            talker=talker,
            time=_time(_field(msg, "timestamp")),
            date=_date(_field(msg, "datestamp")),
            valid=_field(msg, "status") == "A",
            lat=lat,
            lon=lon,
        )
    used = sum(1 for i in range(1, 13) if _field(msg, f"sv_id{i:02d}"))
    return Gsa(
        talker=talker,
        fix_type=_int(_field(msg, "mode_fix_type")),
        satellites=used,
        hdop=_float(_field(msg, "hdop")),
    )


class NmeaStream:
    """Feed bytes as they arrive; get back the GGA/RMC/GSA reports completed by them."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 16:
            raise ValueError("max_line must allow at least a short sentence")
        self.max_line = max_line
        self.counters = StreamCounters()
        self.talkers: set[str] = set()  # talker ids of the sentences used (GP, GN ...)
        self._line = bytearray()  # the sentence being received, from its '$'

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the end of a sentence (never more than ``max_line``)."""
        return len(self._line)

    def feed(self, data: bytes) -> list[Report]:
        reports: list[Report] = []
        pos, end = 0, len(data)
        while pos < end:
            if not self._line:  # hunting for the start of a sentence
                start = data.find(b"$", pos)
                if start < 0:
                    self.counters.noise_bytes += end - pos
                    break
                self.counters.noise_bytes += start - pos
                self._line += b"$"
                pos = start + 1
                continue
            match = _DELIMITER.search(data, pos)
            stop = match.start() if match else end
            if len(self._line) + (stop - pos) > self.max_line:
                self.counters.overlong += 1
                self.counters.noise_bytes += len(self._line) + (stop - pos)
                log.debug("nmea: dropped a line longer than %d bytes", self.max_line)
                self._line.clear()
                pos = stop if match is None or data[stop] == ord("$") else stop + 1
                continue
            self._line += data[pos:stop]
            if match is None:
                break
            if data[stop] == ord("\n"):
                report = self._parse(bytes(self._line))
                if report is not None:
                    reports.append(report)
                self._line.clear()
                pos = stop + 1
            else:  # a new '$' before the line ended: the partial one was noise
                self.counters.malformed += 1
                self._line.clear()
                pos = stop
        return reports

    def _parse(self, line: bytes) -> Report | None:
        line = line.rstrip(b"\r")
        if not line.isascii() or any(byte < 0x20 or byte == 0x7F for byte in line):
            self.counters.malformed += 1
            return None
        text = line.decode("ascii")
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            self.counters.checksum_errors += 1
            log.debug("nmea: checksum error in %r", text)
            return None
        except pynmea2.SentenceTypeError:
            self.counters.ignored += 1  # checksum fine, a type pynmea2 does not know
            return None
        except pynmea2.ParseError:
            self.counters.malformed += 1
            return None
        except (ValueError, LookupError, TypeError, AttributeError):
            # pynmea2's proprietary-sentence classes index into their fields unguarded
            self.counters.malformed += 1
            return None
        if not isinstance(msg, pynmea2.TalkerSentence) or not (
            msg.talker in TALKERS and msg.sentence_type in USED_TYPES
        ):
            self.counters.ignored += 1
            return None
        try:
            report = _convert(msg)
        except ValueError as exc:
            self.counters.malformed += 1
            log.debug("nmea: malformed %s: %s", text[:6], exc)
            return None
        self.counters.sentences += 1
        self.talkers.add(report.talker)
        return report


# -- fix tracking ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Epoch:
    """The reports of one receiver epoch (same UTC time), folded together."""

    time: dt.time | None = None
    gga: Gga | None = None
    rmc: Rmc | None = None
    gsa: Gsa | None = None
    received: float = 0.0  # clock.monotonic() at the latest report
    fix: Fix | None = None

    def covers(self, other: _Epoch) -> bool:
        """True once this epoch has every position sentence ``other`` had."""
        return (other.gga is None or self.gga is not None) and (
            other.rmc is None or self.rmc is not None
        )


def _merge_gsa(old: Gsa | None, new: Gsa) -> Gsa:
    """Multi-constellation receivers send one GSA per system in the same epoch."""
    if old is None:
        return new
    fix_types = [t for t in (old.fix_type, new.fix_type) if t is not None]
    return Gsa(
        talker=old.talker,
        fix_type=max(fix_types) if fix_types else None,
        satellites=old.satellites + new.satellites,
        hdop=old.hdop if old.hdop is not None else new.hdop,
    )


class FixTracker:
    """Folds GGA + RMC + GSA into the latest :class:`Fix`, remembering when it arrived.

    An epoch ends when a GGA/RMC with another time arrives, or the same type again (a
    receiver without time yet). The fix's time is UTC from the sentences; with no RMC
    date seen yet, the date is taken from the receive clock (the day nearest to it, so a
    sentence from 23:59:59 read just after midnight keeps yesterday's date).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._epoch = _Epoch()
        self._closed: _Epoch | None = None
        self._last_datetime: dt.datetime | None = None  # latest date+time an RMC gave

    def update(self, report: Report) -> Fix | None:
        """Apply one report; returns the fix of the epoch it closed, if it closed one."""
        closed: Fix | None = None
        epoch = self._epoch
        if isinstance(report, Gsa):
            epoch.gsa = _merge_gsa(epoch.gsa, report)
        else:
            repeated = epoch.gga if isinstance(report, Gga) else epoch.rmc
            started = epoch.gga is not None or epoch.rmc is not None
            if started and (report.time != epoch.time or repeated is not None):
                closed = self.finish()
                epoch = self._epoch
            epoch.time = report.time
            if isinstance(report, Gga):
                epoch.gga = report
            else:
                epoch.rmc = report
        epoch.received = self._clock.monotonic()
        epoch.fix = self._build(epoch)
        return closed

    def finish(self) -> Fix | None:
        """Close the epoch in progress (end of a log file); returns its fix, if any."""
        epoch, self._epoch = self._epoch, _Epoch()
        if epoch.fix is None:
            return None
        self._closed = epoch
        return epoch.fix

    def _best(self) -> _Epoch | None:
        epoch, closed = self._epoch, self._closed
        if epoch.fix is None or (closed is not None and not epoch.covers(closed)):
            return closed  # the new epoch is still arriving: the last whole one is better
        return epoch

    @property
    def current(self) -> Fix | None:
        """The latest fix (valid or "no fix"), or None before any GGA/RMC arrived."""
        best = self._best()
        return best.fix if best is not None else None

    @property
    def received_at(self) -> float | None:
        """``clock.monotonic()`` when :attr:`current` was received."""
        best = self._best()
        return best.received if best is not None else None

    def _when(self, epoch: _Epoch) -> dt.datetime:
        tod = epoch.time
        if tod is None:  # a receiver without time yet: all we know is when it spoke
            return self._clock.now()
        if epoch.rmc is not None and epoch.rmc.date is not None:
            self._last_datetime = dt.datetime.combine(epoch.rmc.date, tod)
            return self._last_datetime
        ref = self._last_datetime or self._clock.now()
        days = (ref.date() + dt.timedelta(days=k) for k in (-1, 0, 1))
        return min((dt.datetime.combine(day, tod) for day in days), key=lambda t: abs(t - ref))

    def _build(self, epoch: _Epoch) -> Fix | None:
        gga, rmc, gsa = epoch.gga, epoch.rmc, epoch.gsa
        if gga is None and rmc is None:
            return None
        lat, lon = (gga.lat, gga.lon) if gga is not None and gga.lat is not None else (None, None)
        if lat is None and rmc is not None:
            lat, lon = rmc.lat, rmc.lon
        valid = (
            lat is not None
            and (gga is None or gga.quality > 0)
            and (rmc is None or rmc.valid)
            and (gsa is None or gsa.fix_type != 1)
        )
        satellites = gga.satellites if gga is not None else None
        hdop = gga.hdop if gga is not None else None
        if gsa is not None:
            satellites = satellites if satellites is not None else gsa.satellites
            hdop = hdop if hdop is not None else gsa.hdop
        return Fix(
            time=self._when(epoch),
            lat=lat if lat is not None else 0.0,
            lon=lon if lon is not None else 0.0,
            alt=gga.alt if gga is not None else None,
            quality=gga.quality if gga is not None else int(valid),
            satellites=satellites,
            hdop=hdop,
            valid=valid,
        )
