"""Contract-suite plumbing: every registered backend of a kind runs the same tests.

A *rig* pairs the device the terminal drives with the handle that plays the customer
(and injects faults) on the far side. For the in-process ``sim`` backends the handle is
the device itself. A serial or PC/SC backend adds a builder to :data:`RIGS` returning
the driver wired to its emulator plus that emulator's scripting handle (same methods),
and the whole suite runs against it. A registered backend without a rig fails
``test_every_registered_backend_has_a_rig``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atm_common.clock import ManualClock
from terminal.drivers.base import Device, create_device

# The PIN key every pinpad rig is built with, so tests can decrypt the blocks (host side).
TEST_PIN_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")

# builder(clock, **options) -> (unopened device, customer / fault-injection handle)
RigBuilder = Callable[..., tuple[Device, Any]]


def _sim(kind: str, **defaults: Any) -> RigBuilder:
    def build(clock: ManualClock, **options: Any) -> tuple[Device, Any]:
        device = create_device(kind, "sim", clock=clock, **{**defaults, **options})
        return device, device

    return build


RIGS: dict[str, dict[str, RigBuilder]] = {
    "card_reader": {"sim": _sim("card_reader")},
    "pinpad": {"sim": _sim("pinpad", pin_key=TEST_PIN_KEY)},
    "dispenser": {"sim": _sim("dispenser", cassettes=((1000, 100), (2000, 100), (5000, 50)))},
    "gps": {"sim": _sim("gps")},
    "camera": {"sim": _sim("camera", width=64, height=48)},
    "printer": {"sim": _sim("printer")},
}

# Wire-protocol backends add their rigs from their own modules (rigs_<backend>.py),
# each exporting EXTRA_RIGS = {kind: {backend: builder}}.
for _module in ("rigs_lcdm", "rigs_epp", "rigs_nmea", "rigs_pcsc", "rigs_opencv", "rigs_escpos"):
    try:
        _extra = importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__package__}.{_module}":
            raise
        continue
    for _kind, _builders in _extra.EXTRA_RIGS.items():
        RIGS[_kind].update(_builders)


class RigFactory:
    """Builds and opens rigs of one kind/backend; closes them all at teardown."""

    def __init__(self, kind: str, backend: str, clock: ManualClock) -> None:
        self.kind, self.backend, self.clock = kind, backend, clock
        self._devices: list[Device] = []

    def __call__(self, **options: Any) -> tuple[Any, Any]:
        device, customer = RIGS[self.kind][self.backend](self.clock, **options)
        device.open()
        self._devices.append(device)
        return device, customer

    def close_all(self) -> None:
        for device in self._devices:
            device.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _factory(kind: str, request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    factory = RigFactory(kind, str(request.param), clock)
    yield factory
    factory.close_all()


@pytest.fixture(params=sorted(RIGS["card_reader"]))
def card_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("card_reader", request, clock)


@pytest.fixture(params=sorted(RIGS["pinpad"]))
def pinpad_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("pinpad", request, clock)


@pytest.fixture(params=sorted(RIGS["dispenser"]))
def dispenser_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("dispenser", request, clock)


@pytest.fixture(params=sorted(RIGS["gps"]))
def gps_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("gps", request, clock)


@pytest.fixture(params=sorted(RIGS["camera"]))
def camera_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("camera", request, clock)


@pytest.fixture(params=sorted(RIGS["printer"]))
def printer_factory(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[RigFactory]:
    yield from _factory("printer", request, clock)


@pytest.fixture
def card_rig(card_factory: RigFactory) -> tuple[Any, Any]:
    return card_factory()


@pytest.fixture
def pinpad_rig(pinpad_factory: RigFactory) -> tuple[Any, Any]:
    return pinpad_factory()


@pytest.fixture
def dispenser_rig(dispenser_factory: RigFactory) -> tuple[Any, Any]:
    return dispenser_factory()


@pytest.fixture
def gps_rig(gps_factory: RigFactory) -> tuple[Any, Any]:
    return gps_factory()


@pytest.fixture
def camera_rig(camera_factory: RigFactory) -> tuple[Any, Any]:
    return camera_factory()
