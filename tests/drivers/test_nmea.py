"""NMEA GPS: the no-I/O stream core, fix tracking, the driver against its emulator, replay."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_common.clock import ManualClock
from atm_common.errors import AtmError, ConfigError
from sim.devices.emulator import register, unregister
from sim.devices.gps import GpsEmulator, sentence
from terminal.config import DeviceConfig, TerminalConfig
from terminal.diag.gps import current_fix, diagnose, replay_fixes, replay_json_lines
from terminal.drivers.base import DeviceStatus
from terminal.drivers.gps.nmea import NmeaGps
from terminal.drivers.gps.nmea_stream import (
    FixTracker,
    Gga,
    Gsa,
    NmeaStream,
    Rmc,
    StreamCounters,
)
from terminal.errors import DeviceTimeout, DeviceUnavailable

SAMPLE = Path(__file__).parent.parent / "data" / "nmea" / "sample.nmea"
GGA = b"$GPGGA,085958.00,5006.65400,N,00840.92600,E,1,07,1.20,112.4,M,47.9,M,,*58\r\n"
RMC = b"$GPRMC,085958.00,A,5006.65400,N,00840.92600,E,0.004,,140625,,,A*7C\r\n"
_names = itertools.count(1)


def line(body: str, corrupt: bool = False) -> bytes:
    return sentence(body, corrupt) + b"\r\n"


def rig(clock: ManualClock, **sky: object) -> tuple[NmeaGps, GpsEmulator, str]:
    emulator = GpsEmulator(clock, **sky)  # type: ignore[arg-type]
    name = f"nmea-test-{next(_names)}"
    gps = NmeaGps(register(name, emulator), clock=clock)
    gps.open()
    return gps, emulator, name


# -- stream core -------------------------------------------------------------------------------


def test_gga_rmc_gsa_become_typed_reports() -> None:
    gsa = line("GNGSA,A,3,02,05,12,,,,,,,,,,1.60,0.95,1.29")
    gga, rmc, gsa_report = NmeaStream().feed(GGA + RMC + gsa)
    assert gga == Gga("GP", dt.time(8, 59, 58, tzinfo=dt.UTC), 50.1109, 8.6821, 1, 7, 1.2, 112.4)
    assert isinstance(rmc, Rmc) and rmc.valid and rmc.date == dt.date(2025, 6, 14)
    assert gsa_report == Gsa("GN", 3, 3, 0.95)


def test_any_split_gives_the_same_reports() -> None:
    data = SAMPLE.read_bytes()
    whole = NmeaStream().feed(data)
    for size in (1, 2, 7, 64, 1000):
        stream = NmeaStream()
        parts = [stream.feed(data[i : i + size]) for i in range(0, len(data), size)]
        assert [r for part in parts for r in part] == whole
        assert stream.counters == StreamCounters(sentences=26, checksum_errors=1, ignored=9)


def test_binary_noise_between_sentences_is_skipped_and_counted() -> None:
    stream = NmeaStream()
    reports = stream.feed(b"\x00\xff\x13noise\n" + GGA + b"\xfe\x80\r\n" + RMC)
    assert [type(r) for r in reports] == [Gga, Rmc]
    assert stream.counters.noise_bytes == 9 + 4 and stream.counters.malformed == 0


def test_bad_or_missing_checksum_is_counted_and_skipped() -> None:
    stream = NmeaStream()
    missing = b"$GPGGA,085958.00,5006.65400,N,00840.92600,E,1,07,1.20,112.4,M,47.9,M,,\r\n"
    reports = stream.feed(GGA.replace(b"*58", b"*59") + missing + RMC)
    assert [type(r) for r in reports] == [Rmc]
    assert stream.counters.checksum_errors == 2


def test_overlong_line_is_dropped_and_the_buffer_stays_bounded() -> None:
    stream = NmeaStream(max_line=100)
    stream.feed(b"$GPGGA," + b"9" * 5000)
    assert stream.buffered <= 100 and stream.counters.overlong == 1
    assert stream.feed(b"12345\r\n" + RMC) != []  # the rest of the long line is noise


def test_non_ascii_and_truncated_sentences_are_malformed() -> None:
    stream = NmeaStream()
    reports = stream.feed(b"$GPGGA,08\xe9\r\n" + b"$GPRMC,0859" + GGA)
    assert [type(r) for r in reports] == [Gga]
    assert stream.counters.malformed == 2


def test_other_types_talkers_and_bad_fields_are_not_used() -> None:
    stream = NmeaStream()
    data = (
        line("GPGSV,1,1,01,05,64,256,")
        + line("GPVTG,,T,,M,0.004,N,0.007,K,A")
        + line("PUBX,00,090004.00")
        + line("IIGGA,085958.00,5006.654,N,00840.926,E,1,07,1.20,112.4,M,,M,,")
        + line("GPZZZ,1,2")
        + line("GPGGA,085958.00,5006.654,N,00840.926,X,1,07,1.20,112.4,M,,M,,")
        + line("GPGGA,256061.00,,,,,0,00,,,M,,M,,")
    )
    assert stream.feed(data) == []
    assert (stream.counters.ignored, stream.counters.malformed) == (5, 2)


@settings(max_examples=300, deadline=500)
@given(st.lists(st.binary(max_size=300) | st.sampled_from([GGA, RMC, b"$", b"\n"]), max_size=40))
def test_random_bytes_never_raise_and_never_grow_the_buffer(chunks: list[bytes]) -> None:
    stream = NmeaStream(max_line=82)
    tracker = FixTracker(ManualClock())
    for chunk in chunks:
        for report in stream.feed(chunk):
            tracker.update(report)
        assert stream.buffered <= 82
    tracker.finish()


_FIELD = st.text(alphabet="0123456789.,-NSEWAVMT ", max_size=12)


@settings(max_examples=300, deadline=500)
@given(
    st.sampled_from(["GPGGA", "GNRMC", "BDGSA", "GLGGA", "PUBX", "PGRME", "GPTXT"]),
    st.lists(_FIELD, max_size=16),
)
def test_well_framed_sentences_with_random_fields_never_raise(kind: str, fields: list[str]) -> None:
    stream = NmeaStream()
    tracker = FixTracker(ManualClock())
    try:
        for report in stream.feed(line(",".join([kind, *fields]))):
            tracker.update(report)
    except AtmError:
        pass  # a project error would be acceptable; anything else fails the test
    tracker.finish()


# -- fix tracking ------------------------------------------------------------------------------


def test_tracker_combines_an_epoch_and_reports_its_receive_time() -> None:
    clock = ManualClock()
    tracker = FixTracker(clock)
    for report in NmeaStream().feed(RMC + GGA + line("GPGSA,A,3,02,05,,,,,,,,,,,2.1,1.2,1.7")):
        tracker.update(report)
    fix = tracker.current
    assert fix is not None and fix.valid
    assert fix.time == dt.datetime(2025, 6, 14, 8, 59, 58, tzinfo=dt.UTC)
    assert (fix.alt, fix.quality, fix.satellites, fix.hdop) == (112.4, 1, 7, 1.2)
    assert tracker.received_at == clock.monotonic()


@pytest.mark.parametrize(
    ("clock_at", "sentence_time", "expected"),
    [
        (dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC), "115959.50", "2026-01-01T11:59:59.5"),
        # 23:59:59 read just after midnight is yesterday's, not today's
        (dt.datetime(2026, 1, 2, 0, 0, 1, tzinfo=dt.UTC), "235959.00", "2026-01-01T23:59:59"),
        (dt.datetime(2026, 1, 1, 23, 59, 59, tzinfo=dt.UTC), "000001.00", "2026-01-02T00:00:01"),
    ],
)
def test_gga_alone_is_dated_by_the_receive_clock(
    clock_at: dt.datetime, sentence_time: str, expected: str
) -> None:
    tracker = FixTracker(ManualClock(clock_at))
    gga = line(f"GNGGA,{sentence_time},5006.654,N,00840.926,E,1,07,1.2,9,M,,M,,")
    for report in NmeaStream().feed(gga):
        tracker.update(report)
    fix = tracker.current
    assert fix is not None and fix.valid and (fix.satellites, fix.alt) == (7, 9.0)
    assert fix.time == dt.datetime.fromisoformat(expected).replace(tzinfo=dt.UTC)


def test_no_fix_is_reported_as_such() -> None:
    tracker = FixTracker(ManualClock())
    data = line("GPRMC,090001.00,V,,,,,,,140625,,,N") + line("GPGGA,090001.00,,,,,0,00,99.99,,,,,,")
    for report in NmeaStream().feed(data):
        tracker.update(report)
    fix = tracker.current
    assert fix is not None and not fix.valid and fix.quality == 0


# -- the driver against its emulator -------------------------------------------------------------


def test_fix_goes_stale_when_the_receiver_falls_silent() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock)
    assert gps.fix() is not None
    emulator.silence()
    clock.advance(59.0)
    fix = gps.fix()  # waits read_timeout, hears nothing
    assert fix is not None and gps.age(fix) == pytest.approx(59.2)
    clock.advance(1.0)
    assert gps.fix() is None
    assert gps.status() is DeviceStatus.DEGRADED
    emulator.resume()
    fix = gps.fix()
    assert fix is not None and fix.time == clock.now() and gps.status() is DeviceStatus.OK


def test_faults_on_the_line_are_counted_and_the_fix_survives() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock)
    assert gps.fix() is not None
    emulator.bad_checksum_next(2)  # the RMC and GGA of the next report
    emulator.noise(b"\x00\xff\xfe$GP")
    clock.advance(1.0)
    assert gps.fix() is not None
    counters = gps.counters
    assert (counters.checksum_errors, counters.malformed, counters.noise_bytes) == (2, 1, 3)
    assert counters.sentences == 4  # 3 from the first report, the GSA of the second


@pytest.mark.parametrize("talker", ["GN", "BD", "GL", "GP"])
def test_every_talker_gives_a_fix(talker: str) -> None:
    gps, emulator, _ = rig(ManualClock(), lat=-33.8688, lon=151.2093, talker=talker)
    fix = gps.fix()
    assert fix is not None and (fix.lat, fix.lon) == (-33.8688, 151.2093)
    with pytest.raises(ValueError):
        emulator.talker = "XX"


def test_track_is_interpolated_between_waypoints() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock)
    emulator.set_track([(50.0, 8.0, 100.0), (50.001, 8.0, 110.0)], speed=10.0)  # ~111 m north
    first = gps.fix()
    assert first is not None and (first.lat, first.alt) == (50.0, 100.0)
    clock.advance(5.0)
    fix = gps.fix()
    assert fix is not None and fix.lat == pytest.approx(50.00045, abs=2e-6) and fix.lon == 8.0
    assert fix.alt == pytest.approx(104.5, abs=0.1)
    clock.advance(60.0)
    end = gps.fix()
    assert end is not None and (end.lat, end.alt) == (50.001, 110.0)


def test_replay_restamped_gives_fresh_fixes_in_log_order() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock)
    emulator.replay(SAMPLE, speed=10.0)
    seen = []
    for _ in range(20):
        fix = gps.fix()
        assert gps.last_fix is not None
        seen.append((gps.last_fix.lat, gps.last_fix.valid))
        if fix is not None:
            assert gps.age(fix) < 0.2 and fix.time.date() == clock.now().date()
        if gps.last_fix.lat == 50.1113:
            break
    positions = [lat for lat, valid in dict.fromkeys(seen) if valid]
    assert positions[0] == 50.1109 and positions[-1] == 50.1113
    assert (0.0, False) in seen
    assert gps.counters.checksum_errors == 1


def test_replay_verbatim_is_stale() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock)
    emulator.replay(SAMPLE, speed=100.0, restamp=False)
    for _ in range(5):
        assert gps.fix() is None  # fixes from 2025
    assert gps.last_fix is not None and gps.last_fix.time.year == 2025


def test_fix_never_hangs_on_a_flooding_line() -> None:
    class Flood:
        polls = 0

        def receive(self, data: bytes) -> bytes:
            return b""

        def poll(self, wait: float) -> bytes:
            self.polls += 1
            return b"$GPGGA," + bytes(range(256)) * 256

    flood = Flood()
    gps = NmeaGps(register(f"nmea-flood-{next(_names)}", flood), max_read=4096)
    with gps:
        assert gps.fix() is None
    assert flood.polls == 1 and gps.counters.noise_bytes <= 4096


def test_missing_port_is_unavailable_and_a_lost_port_reconnects() -> None:
    with pytest.raises(DeviceUnavailable):
        NmeaGps("sim://no-such-gps").open()

    class Flaky(GpsEmulator):
        broken = False

        def poll(self, wait: float) -> bytes:
            if self.broken:
                raise serial.SerialException("device disconnected")
            return super().poll(wait)

    clock = ManualClock()
    emulator = Flaky(clock)
    name = f"nmea-flaky-{next(_names)}"
    gps = NmeaGps(register(name, emulator), clock=clock)
    with gps:
        assert gps.fix() is not None
        emulator.broken = True
        with pytest.raises(DeviceUnavailable):
            gps.fix()
        unregister(name)  # still unplugged: reopening fails
        assert gps.status() is DeviceStatus.OFFLINE
        with pytest.raises(DeviceUnavailable):
            gps.fix()
        emulator.broken = False
        register(name, emulator)
        clock.advance(1.0)
        assert gps.fix() is not None and gps.status() is DeviceStatus.OK


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        NmeaGps("")
    with pytest.raises(ConfigError):
        NmeaGps("sim://x", read_timeout=-1.0)
    assert NmeaGps("sim://x", baudrate=4800).baudrate == 4800
    with pytest.raises(ValueError):
        GpsEmulator(ManualClock()).set_fix(0.0, 181.0)


def test_emulator_waits_only_when_nothing_is_due() -> None:
    clock = ManualClock()
    emulator = GpsEmulator(clock)
    first = emulator.poll(0.2)
    assert clock.monotonic() == 0.0 and first.count(b"\r\n") == 3
    assert emulator.poll(0.2) == b"" and clock.monotonic() == pytest.approx(0.2)
    assert emulator.poll(5.0) != b"" and clock.monotonic() == pytest.approx(1.0)
    emulator.silence()
    assert emulator.poll(3.0) == b"" and clock.monotonic() == pytest.approx(4.0)


# -- diagnostics ---------------------------------------------------------------------------------

EXPECTED = [
    ("2025-06-14T08:59:58Z", 50.1109, 8.6821, 112.4, True, 1, 7, 1.2),
    ("2025-06-14T08:59:59Z", 50.11095, 8.68225, 112.9, True, 1, 8, 1.1),
    ("2025-06-14T09:00:00Z", 50.111, 8.6824, None, True, 1, 8, 1.1),  # GGA corrupted
    ("2025-06-14T09:00:01Z", 0.0, 0.0, None, False, 0, 0, 99.99),
    ("2025-06-14T09:00:02Z", 0.0, 0.0, None, False, 0, 0, 99.99),
    ("2025-06-14T09:00:03Z", 50.11112, 8.68262, 114.0, True, 1, 10, 0.95),
    ("2025-06-14T09:00:04Z", 50.1112, 8.6827, 114.2, True, 2, 11, 0.8),
    ("2025-06-14T09:00:05Z", 50.11125, 8.68275, 114.3, True, 1, 6, 1.4),
    ("2025-06-14T09:00:06Z", 50.1113, 8.6828, 114.3, True, 1, 5, 1.8),
]
KEYS = ("time", "lat", "lon", "alt", "fix", "quality", "satellites", "hdop")


def test_replay_of_the_sample_log() -> None:
    counters = StreamCounters()
    assert list(replay_fixes(SAMPLE, counters=counters)) == [
        dict(zip(KEYS, row, strict=True)) for row in EXPECTED
    ]
    assert counters == StreamCounters(sentences=26, checksum_errors=1, ignored=9)
    assert [json.loads(text) for text in replay_json_lines(SAMPLE)][3]["fix"] is False


def test_replay_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        list(replay_fixes(tmp_path / "none.nmea"))


def test_diag_reports_the_current_fix_and_line_counters() -> None:
    clock = ManualClock()
    gps, emulator, _ = rig(clock, lat=48.1374, lon=11.5755)
    emulator.lose_fix()
    report = current_fix(gps, clock, timeout=2.0)
    assert report["fix"] is None and report["last"]["fix"] is False
    assert report["status"] == "degraded" and report["counters"]["sentences"] > 0
    emulator.set_fix(48.1374, 11.5755, alt=519.0)
    report = current_fix(gps, clock)
    assert report["status"] == "ok" and report["fix"]["lat"] == 48.1374


def test_diagnose_from_config() -> None:
    clock = ManualClock()
    url = register(f"nmea-diag-{next(_names)}", GpsEmulator(clock))
    config = TerminalConfig("TERM0001", devices={"gps": DeviceConfig("nmea", {"url": url})})
    assert diagnose(config, clock)["status"] == "ok"
    broken = TerminalConfig(
        "TERM0001", devices={"gps": DeviceConfig("nmea", {"url": "sim://gone"})}
    )
    report = diagnose(broken, clock)
    assert report["status"] == "offline" and "sim://gone" in report["error"]
    with pytest.raises(ConfigError):
        diagnose(TerminalConfig("TERM0001"), clock)


# -- diagnostics (atm diag status) -------------------------------------------------------------


def test_info_names_port_and_talker_and_counters_count_line_errors() -> None:
    clock = ManualClock()
    gps, emulator, name = rig(clock, talker="GN")
    emulator.bad_checksum_next(1)
    info = gps.info()
    assert info["port"] == f"sim://{name}" and info["talker"] == "GN"
    assert info["fix"] == "valid"
    counters = gps.counter_values()
    assert counters["checksum_errors"] == 1 and counters["sentences"] >= 1
    assert counters == dataclasses.asdict(gps.counters)
    assert gps.last_error() is None
    gps.close()


def test_info_of_a_receiver_that_never_spoke_is_a_timeout() -> None:
    clock = ManualClock()
    emulator = GpsEmulator(clock)
    emulator.silence()
    gps = NmeaGps(register(f"nmea-test-{next(_names)}", emulator), clock=clock)
    with gps, pytest.raises(DeviceTimeout, match="silent"):
        gps.info()
    assert clock.monotonic() >= 2.0  # it listened, on the injected clock
