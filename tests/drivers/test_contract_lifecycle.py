"""Life-cycle contract shared by every device kind and backend (principle 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from terminal.drivers.base import BACKENDS, Device, DeviceStatus, create_device
from terminal.drivers.camera.base import Camera
from terminal.drivers.card_reader.base import CardReader
from terminal.drivers.dispenser.base import Dispenser
from terminal.drivers.gps.base import Gps
from terminal.drivers.pinpad.base import PinPad
from terminal.drivers.printer.base import Printer
from terminal.errors import DeviceUnavailable

from .conftest import RIGS

ABCS: dict[str, type[object]] = {
    "card_reader": CardReader,
    "pinpad": PinPad,
    "dispenser": Dispenser,
    "gps": Gps,
    "camera": Camera,
    "printer": Printer,
}

# One harmless public call per kind, to prove a closed device refuses work.
USE: dict[str, Callable[[Any], object]] = {
    "card_reader": lambda d: d.wait_for_card(0.0),
    "pinpad": lambda d: d.read_keys(timeout=1.0),
    "dispenser": lambda d: d.cassettes(),
    "gps": lambda d: d.fix(),
    "camera": lambda d: d.capture(),
    "printer": lambda d: d.sensors(),
}

ALL = [(kind, backend) for kind in sorted(RIGS) for backend in sorted(RIGS[kind])]


@pytest.fixture(params=ALL, ids=[f"{k}-{b}" for k, b in ALL])
def unopened(request: pytest.FixtureRequest, clock: ManualClock) -> tuple[str, Device]:
    kind, backend = request.param
    device, _ = RIGS[kind][backend](clock)
    return kind, device


# Backends whose behaviour the in-process contract cannot drive honestly, and where the
# same promises are tested instead: a PC/SC card cannot carry the suite's free-text
# "unreadable" reasons nor notice an eject; tests/pcsc covers it through a real pcscd.
TESTED_ELSEWHERE = {("card_reader", "pcsc"): "tests/pcsc"}


def test_every_registered_backend_has_a_rig() -> None:
    for kind, backends in BACKENDS.items():
        assert kind in RIGS, f"no contract rigs for device kind {kind}"
        missing = set(backends) - set(RIGS[kind]) - {b for k, b in TESTED_ELSEWHERE if k == kind}
        assert not missing, f"{kind} backends without a contract rig: {sorted(missing)}"
    for kind, backend in TESTED_ELSEWHERE:
        assert backend in BACKENDS[kind]


def test_backend_is_its_kinds_abc(unopened: tuple[str, Device]) -> None:
    kind, device = unopened
    assert isinstance(device, ABCS[kind])
    assert device.kind == kind


def test_offline_until_opened_and_after_close(unopened: tuple[str, Device]) -> None:
    _, device = unopened
    assert device.status() is DeviceStatus.OFFLINE
    device.open()
    assert device.status() is not DeviceStatus.OFFLINE
    device.close()
    assert device.status() is DeviceStatus.OFFLINE


def test_open_twice_and_close_twice_are_safe(unopened: tuple[str, Device]) -> None:
    kind, device = unopened
    device.open()
    device.open()
    USE[kind](device)
    device.close()
    device.close()
    assert device.status() is DeviceStatus.OFFLINE


def test_close_without_open_is_safe(unopened: tuple[str, Device]) -> None:
    _, device = unopened
    device.close()
    device.close()
    assert device.status() is DeviceStatus.OFFLINE


def test_context_manager_opens_and_closes(unopened: tuple[str, Device]) -> None:
    kind, device = unopened
    with device as entered:
        assert entered is device
        assert device.status() is not DeviceStatus.OFFLINE
        USE[kind](device)
    assert device.status() is DeviceStatus.OFFLINE
    with pytest.raises(DeviceUnavailable):
        USE[kind](device)


def test_context_manager_closes_on_error(unopened: tuple[str, Device]) -> None:
    _, device = unopened
    with pytest.raises(RuntimeError, match="boom"), device:
        raise RuntimeError("boom")
    assert device.status() is DeviceStatus.OFFLINE


def test_use_before_open_is_refused(unopened: tuple[str, Device]) -> None:
    kind, device = unopened
    with pytest.raises(DeviceUnavailable) as info:
        USE[kind](device)
    assert info.value.device == kind


def test_use_after_close_and_reopen_are_refused(unopened: tuple[str, Device]) -> None:
    kind, device = unopened
    device.open()
    device.close()
    with pytest.raises(DeviceUnavailable):
        USE[kind](device)
    with pytest.raises(DeviceUnavailable):
        device.open()


def test_diagnostics_hooks_give_plain_values(unopened: tuple[str, Device]) -> None:
    """info(), counter_values(), last_error(): what ``atm diag status`` prints as it is."""
    _, device = unopened
    with pytest.raises(DeviceUnavailable):
        device.info()  # may talk to the device: refused before open
    with device:
        info = device.info()
        counters = device.counter_values()
        assert device.last_error() is None  # a healthy device just opened
    for key, value in info.items():
        assert isinstance(key, str) and value is not None
        items = value if isinstance(value, tuple) else (value,)
        assert all(isinstance(v, str | int | float | bool) for v in items), (key, value)
    assert all(isinstance(k, str) and type(v) is int for k, v in counters.items()), counters
    json.dumps({"info": info, "counters": counters})
    assert device.counter_values() == counters  # no I/O: still answers once closed


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        create_device("dispenser", "no-such-backend")
    assert info.value.key == "devices.dispenser.backend"
    assert "no-such-backend" in str(info.value)
