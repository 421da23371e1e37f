"""GPS contract: a live fix, no fix, and a fix that goes stale as the clock moves."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from terminal.drivers.base import DeviceStatus
from terminal.drivers.gps.base import Gps
from terminal.drivers.gps.sim import SimGps

from .conftest import RigFactory

Rig = tuple[Gps, Any]


def test_live_fix_reports_position_and_quality(gps_rig: Rig, clock: ManualClock) -> None:
    gps, customer = gps_rig
    customer.set_fix(48.1374, 11.5755, alt=519.0, quality=2, satellites=11, hdop=0.7)
    fix = gps.fix()
    assert fix is not None and fix.valid
    assert (fix.lat, fix.lon, fix.alt) == (48.1374, 11.5755, 519.0)
    assert (fix.quality, fix.satellites, fix.hdop) == (2, 11, 0.7)
    assert fix.time == clock.now()
    assert gps.age(fix) == 0.0
    assert gps.status() is DeviceStatus.OK


def test_info_reports_the_receivers_fix(gps_rig: Rig) -> None:
    gps, customer = gps_rig
    customer.set_fix(48.1374, 11.5755, quality=1, satellites=11, hdop=0.7)
    info = gps.info()
    assert info["fix"] == "valid"
    assert (info["lat"], info["lon"], info["satellites"], info["hdop"]) == (
        48.1374,
        11.5755,
        11,
        0.7,
    )
    customer.lose_fix()
    info = gps.info()
    assert info["fix"] == "no fix" and "lat" not in info


def test_live_fix_keeps_tracking_the_clock(gps_rig: Rig, clock: ManualClock) -> None:
    gps, _ = gps_rig
    clock.advance(3600.0)
    fix = gps.fix()
    assert fix is not None and fix.time == clock.now()


def test_no_fix_is_reported_as_none(gps_rig: Rig) -> None:
    gps, customer = gps_rig
    customer.lose_fix()
    assert gps.fix() is None
    assert gps.status() is DeviceStatus.DEGRADED
    customer.set_fix(50.0, 8.0)
    fix = gps.fix()
    assert fix is not None and (fix.lat, fix.lon) == (50.0, 8.0)
    assert gps.status() is DeviceStatus.OK


def test_quality_zero_is_no_fix(gps_rig: Rig) -> None:
    gps, customer = gps_rig
    customer.set_fix(50.0, 8.0, quality=0)
    assert gps.fix() is None


def test_fix_goes_stale_after_max_age(gps_rig: Rig, clock: ManualClock) -> None:
    gps, customer = gps_rig
    customer.set_fix(52.52, 13.405, fix_time=clock.now())
    clock.advance(gps.max_age - 1.0)
    fix = gps.fix()
    assert fix is not None
    assert gps.age(fix) == pytest.approx(gps.max_age - 1.0)
    assert gps.status() is DeviceStatus.OK
    clock.advance(2.0)
    assert gps.fix() is None
    assert gps.status() is DeviceStatus.DEGRADED


def test_fix_time_in_the_future_has_zero_age(gps_rig: Rig, clock: ManualClock) -> None:
    gps, customer = gps_rig
    customer.set_fix(52.52, 13.405, fix_time=clock.now() + dt.timedelta(seconds=5))
    fix = gps.fix()
    assert fix is not None and gps.age(fix) == 0.0


# -- sim backend specifics ---------------------------------------------------------------


def test_sim_constructor_fix_and_max_age(gps_factory: RigFactory, clock: ManualClock) -> None:
    start = clock.now()
    gps, _ = gps_factory(lat=-33.8688, lon=151.2093, fix_time=start, max_age=10.0)
    fix = gps.fix()
    assert fix is not None and (fix.lat, fix.lon, fix.time) == (-33.8688, 151.2093, start)
    clock.advance(10.5)
    assert gps.fix() is None


def test_sim_rejects_impossible_positions(clock: ManualClock) -> None:
    with pytest.raises(ConfigError):
        SimGps(clock, lat=91.0, lon=0.0)
    with SimGps(clock) as gps, pytest.raises(ValueError):
        gps.set_fix(0.0, 181.0)
