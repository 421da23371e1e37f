"""Camera contract: timestamped BGR frames; a frame source plays in a loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from terminal.drivers.camera.base import Camera
from terminal.drivers.camera.sim import SimCamera

from .conftest import RigFactory

Rig = tuple[Camera, Any]


def test_frames_are_bgr_arrays_of_the_reported_size(camera_rig: Rig) -> None:
    camera, _ = camera_rig
    frame = camera.capture()
    assert isinstance(frame.image, np.ndarray)
    assert frame.image.shape == (frame.height, frame.width, 3)
    assert frame.image.dtype == np.uint8
    assert (frame.width, frame.height) == (64, 48)


def test_frames_carry_clock_timestamps(camera_rig: Rig, clock: ManualClock) -> None:
    camera, _ = camera_rig
    first = camera.capture()
    assert first.time == clock.now()
    clock.advance(0.5)
    second = camera.capture()
    assert (second.time - first.time).total_seconds() == pytest.approx(0.5)
    assert not np.array_equal(first.image, second.image)


def test_given_frames_play_in_a_loop(camera_factory: RigFactory, clock: ManualClock) -> None:
    images = [np.full((4, 6, 3), value, dtype=np.uint8) for value in (10, 20, 30)]
    camera, _ = camera_factory(frames=images)
    captured = []
    for _ in range(7):
        captured.append(camera.capture())
        clock.advance(1 / 30)
    assert [int(f.image[0, 0, 0]) for f in captured] == [10, 20, 30, 10, 20, 30, 10]
    assert all((f.width, f.height) == (6, 4) for f in captured)
    times = [f.time for f in captured]
    assert times == sorted(times) and len(set(times)) == 7


# -- sim backend specifics ---------------------------------------------------------------


def test_sim_frames_without_a_shape_use_the_configured_size(clock: ManualClock) -> None:
    with SimCamera(clock, frames=["a", "b"], width=320, height=240) as camera:
        frames = [camera.capture() for _ in range(3)]
    assert [f.image for f in frames] == ["a", "b", "a"]
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert camera.captured == 3


@pytest.mark.parametrize("options", [{"frames": []}, {"width": 0}, {"height": -1}])
def test_sim_bad_config(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimCamera(**options)
