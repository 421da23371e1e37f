"""Basic liveness on real video: a moving face passes, a photo held up (identical frames) fails.

The videos are made by :mod:`sim.devices.camera_video` from the photos in sim/data/faces and
read back
through the real :class:`OpenCvCamera`, as a kiosk would read its webcam.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from atm_common.clock import ManualClock
from atm_common.face.verify import FaceVerifier, ImageError, NoFace, letterbox
from sim.data import FACES_DIR as FACES
from sim.devices.camera_video import make_camera_video, make_held_photo_video
from terminal.drivers.base import DeviceStatus
from terminal.drivers.camera.base import Frame
from terminal.drivers.camera.opencv import OpenCvCamera

SIZE = (640, 360)  # small frames keep the one detection per check fast
FRAMES = 8


def photo(name: str) -> Path:
    path = FACES / name
    if not path.is_file():
        pytest.fail(f"test photo {path} is missing: see sim/data/faces")
    return path


@pytest.fixture(scope="module")
def verifier() -> FaceVerifier:
    return FaceVerifier()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("liveness")
    made = {}
    for suffix in (".avi", ".mp4"):
        made["live" + suffix] = make_camera_video(
            folder / f"live{suffix}", [photo("obama.jpg")], size=SIZE, frames_per_photo=FRAMES
        ).path
        made["photo" + suffix] = make_held_photo_video(
            folder / f"photo{suffix}", photo("obama.jpg"), size=SIZE, frames=FRAMES
        ).path
    return made


def capture(
    path: Path, clock: ManualClock, count: int = FRAMES
) -> tuple[list[Frame], DeviceStatus]:
    with OpenCvCamera(path, clock=clock, loop=True) as camera:
        frames = []
        for _ in range(count):
            frames.append(camera.capture())
            clock.advance(0.5)
        return frames, camera.status()


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_moving_face_is_live(
    verifier: FaceVerifier, videos: dict[str, Path], suffix: str
) -> None:
    frames, status = capture(videos["live" + suffix], ManualClock())
    result = verifier.liveness(frames)
    assert result.live, result
    assert result.frames == FRAMES and result.pairs == FRAMES - 1
    assert result.changed == result.pairs and result.change >= 2.0
    assert status is DeviceStatus.OK


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_photo_held_up_is_not_live(
    verifier: FaceVerifier, videos: dict[str, Path], suffix: str
) -> None:
    frames, _ = capture(videos["photo" + suffix], ManualClock())
    result = verifier.liveness(frames)
    assert not result.live, result
    assert result.changed <= 1 and result.change < 1.0
    assert "still image" in result.reason


def test_the_camera_itself_reports_the_held_photo_as_frozen(videos: dict[str, Path]) -> None:
    _, status = capture(videos["photo.avi"], ManualClock())
    assert status is DeviceStatus.DEGRADED  # identical frames for 3.5 s of clock


def test_raw_arrays_work_as_frames(verifier: FaceVerifier) -> None:
    base = letterbox(photo("obama2.jpg"), *SIZE)
    assert verifier.liveness([base, base, base]).live is False
    brighter = [np.clip(base.astype(np.int16) + 6 * i, 0, 255).astype(np.uint8) for i in range(3)]
    assert verifier.liveness(brighter).live is True


def test_too_few_frames_are_not_live(verifier: FaceVerifier) -> None:
    base = letterbox(photo("obama.jpg"), *SIZE)
    result = verifier.liveness([base, base], min_frames=3)
    assert not result.live and "need 3 frames" in result.reason


def test_no_face_in_the_frames_is_no_face(verifier: FaceVerifier) -> None:
    blank = [np.full((*SIZE[::-1], 3), 10 * i, dtype=np.uint8) for i in range(3)]
    with pytest.raises(NoFace):
        verifier.liveness(blank)


def test_frames_of_different_sizes_are_refused(verifier: FaceVerifier) -> None:
    base = letterbox(photo("obama.jpg"), *SIZE)
    with pytest.raises(ImageError, match="size"):
        verifier.liveness([base, base, base[:-2]])


# -- the video builder ---------------------------------------------------------------------


def test_camera_video_letterboxes_every_photo_and_varies_each_frame(tmp_path: Path) -> None:
    info = make_camera_video(
        tmp_path / "two.avi",
        [photo("obama.jpg"), photo("biden.jpg")],
        size=SIZE,
        frames_per_photo=3,
    )
    assert (info.frames, info.width, info.height, info.codec) == (6, 640, 360, "MJPG")
    with OpenCvCamera(info.path) as camera:
        frames = [camera.capture().image for _ in range(6)]
    assert all(f.shape == (360, 640, 3) for f in frames)
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
    assert not frames[0][:, :100].any()  # portrait photos: black side bars


def test_camera_video_refuses_bad_requests(tmp_path: Path) -> None:
    from atm_common.errors import ConfigError
    from sim.devices.camera_video import write_video

    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match="suffix"):
        write_video(tmp_path / "x.mkv", [frame])
    with pytest.raises(ConfigError, match="no frames"):
        write_video(tmp_path / "x.avi", [])
    with pytest.raises(ConfigError, match="64x48"):
        write_video(tmp_path / "y.avi", [frame, np.zeros((40, 64, 3), np.uint8)])
    assert not (tmp_path / "y.avi").exists()
