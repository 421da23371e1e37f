"""The NMEA driver through a real pseudo-terminal, on the system clock (a second or two)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from atm_common.clock import SystemClock
from sim.devices.gps import GpsEmulator
from sim.devices.pty import PtyBridge
from terminal.drivers.base import DeviceStatus
from terminal.drivers.gps.base import Fix
from terminal.drivers.gps.nmea import NmeaGps
from terminal.errors import DeviceUnavailable

pytestmark = pytest.mark.serial_pty

CLOCK = SystemClock()


@pytest.fixture
def bridge() -> Iterator[PtyBridge]:
    with PtyBridge(GpsEmulator(CLOCK, talker="GN"), "gps") as running:
        yield running


def poll_until(gps: NmeaGps, wanted: Callable[[Fix], bool], seconds: float = 5.0) -> Fix:
    """Call fix() (each call waits on the port, no sleeping) until ``wanted`` or time out."""
    deadline = CLOCK.monotonic() + seconds
    while CLOCK.monotonic() < deadline:
        fix = gps.fix()
        if fix is not None and wanted(fix):
            return fix
    pytest.fail(f"no wanted fix within {seconds} s; counters {gps.counters}")


def test_fixes_arrive_over_a_pty(bridge: PtyBridge) -> None:
    emulator = bridge.emulator
    assert isinstance(emulator, GpsEmulator)
    with NmeaGps(bridge.path, clock=CLOCK, baudrate=4800, read_timeout=0.1) as gps:
        fix = poll_until(gps, lambda f: (f.lat, f.lon) == (50.1109, 8.6821))
        assert gps.age(fix) < 1.0 and gps.status() is DeviceStatus.OK
        emulator.set_fix(48.1374, 11.5755, alt=519.0, quality=2, satellites=11, hdop=0.7)
        fix = poll_until(gps, lambda f: f.lat == 48.1374)
        assert (fix.lon, fix.alt, fix.quality, fix.satellites, fix.hdop) == (
            11.5755,
            519.0,
            2,
            11,
            0.7,
        )
        emulator.bad_checksum_next(1)
        emulator.noise(b"\x00\xff garbage \xfe")
        emulator.lose_fix()
        deadline = CLOCK.monotonic() + 5.0
        while gps.fix() is not None and CLOCK.monotonic() < deadline:
            pass
        assert gps.fix() is None and gps.status() is DeviceStatus.DEGRADED
        assert gps.counters.checksum_errors >= 1 and gps.counters.noise_bytes > 0


def test_a_vanished_port_is_offline(bridge: PtyBridge) -> None:
    gps = NmeaGps(bridge.path, clock=CLOCK, read_timeout=0.1)
    with gps:
        poll_until(gps, lambda f: f.valid)
        bridge.stop()  # the receiver is unplugged: the pty goes away
        with pytest.raises(DeviceUnavailable):
            for _ in range(50):
                gps.fix()
        assert gps.status() is DeviceStatus.OFFLINE
        with pytest.raises(DeviceUnavailable):
            gps.fix()
