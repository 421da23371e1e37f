"""OpenCV camera specifics beyond the contract: errors, frozen streams, snapshots, lazy import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from atm_common.clock import ManualClock
from atm_common.errors import AtmError, ConfigError
from sim.devices.camera_video import write_video
from terminal.drivers.base import DeviceStatus
from terminal.drivers.camera.opencv import OpenCvCamera
from terminal.errors import DeviceFault, DeviceTimeout, DeviceUnavailable

from .rigs_opencv import synthetic_frames


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "cam.avi", synthetic_frames(4), fps=30).path


def still_then_moving(tmp_path: Path, still: int, moving: int) -> Path:
    frames = synthetic_frames(moving + 1)
    return write_video(tmp_path / "still.avi", [frames[0]] * still + frames[1:], fps=30).path


def test_no_camera_at_index_is_unavailable_and_named() -> None:
    camera = OpenCvCamera(97)
    with pytest.raises(DeviceUnavailable) as info:
        camera.open()
    assert info.value.device == "camera"
    assert "97" in str(info.value)
    assert camera.status() is DeviceStatus.OFFLINE


def test_index_given_as_text_is_a_device() -> None:
    camera = OpenCvCamera("96")
    assert camera.source == 96 and camera.source_kind == "device"


def test_missing_file_is_unavailable_and_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.avi"
    with pytest.raises(DeviceUnavailable, match=r"nowhere\.avi"):
        OpenCvCamera(missing).open()


def test_unreachable_stream_is_unavailable_and_named() -> None:
    url = "rtsp://127.0.0.1:1/cam"  # loopback, port 1: refused at once
    with pytest.raises(DeviceUnavailable, match=re.escape(url)):
        OpenCvCamera(url, read_timeout=1.0).open()


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 500, b"RIFF\x10\x00\x00\x00AVI LIST"])
def test_corrupt_file_is_a_clear_fault(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.avi"
    bad.write_bytes(content)
    with pytest.raises(DeviceFault, match=r"broken\.avi.*corrupt") as info:
        OpenCvCamera(bad).open()
    assert info.value.device == "camera"


def test_truncated_file_is_a_clear_fault(tmp_path: Path, video: Path) -> None:
    cut = tmp_path / "cut.mp4"
    whole = write_video(tmp_path / "whole.mp4", synthetic_frames(4)).path.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DeviceFault, match=r"cut\.mp4"):
        OpenCvCamera(cut).open()


def test_end_of_file_without_loop_times_out_and_faults(video: Path, clock: ManualClock) -> None:
    with OpenCvCamera(video, clock=clock) as camera:
        for _ in range(4):
            camera.capture()
        with pytest.raises(DeviceTimeout, match="end of video file"):
            camera.capture()
        assert camera.status() is DeviceStatus.FAULT
        assert "loop=True" in (camera.status_detail or "")


def test_loop_rewinds_the_file(video: Path, clock: ManualClock) -> None:
    with OpenCvCamera(video, clock=clock, loop=True) as camera:
        firsts = [int(camera.capture().image[0, 0, 0]) for _ in range(9)]
        assert camera.frames_read == 9
    assert firsts[:4] == firsts[4:8] and firsts[8] == firsts[0]
    assert len(set(firsts[:4])) == 4


def test_frozen_stream_degrades_then_recovers(tmp_path: Path, clock: ManualClock) -> None:
    path = still_then_moving(tmp_path, still=5, moving=2)
    with OpenCvCamera(path, clock=clock, frozen_after=2.0, frozen_frames=3) as camera:
        seen = []
        for _ in range(7):
            camera.capture()
            seen.append((camera.status(), camera.status_detail))
            clock.advance(1.0)
    states = [s for s, _ in seen]
    # 3 identical frames over 2 s of clock -> frozen; a new frame clears it.
    assert states == [DeviceStatus.OK] * 2 + [DeviceStatus.DEGRADED] * 3 + [DeviceStatus.OK] * 2
    assert seen[2][1] is not None and seen[2][1].startswith("frozen stream")
    assert seen[-1][1] is None


def test_identical_frames_in_quick_succession_are_not_frozen(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = still_then_moving(tmp_path, still=5, moving=1)
    with OpenCvCamera(path, clock=clock, frozen_after=2.0) as camera:
        for _ in range(5):
            camera.capture()
            clock.advance(0.1)
        assert camera.status() is DeviceStatus.OK


def test_frozen_detection_can_be_disabled(tmp_path: Path, clock: ManualClock) -> None:
    path = still_then_moving(tmp_path, still=5, moving=1)
    with OpenCvCamera(path, clock=clock, frozen_after=None) as camera:
        for _ in range(5):
            camera.capture()
            clock.advance(5.0)
        assert camera.status() is DeviceStatus.OK


def test_snapshot_writes_a_readable_jpeg(tmp_path: Path, video: Path, clock: ManualClock) -> None:
    target = tmp_path / "snap.jpg"
    with OpenCvCamera(video, clock=clock) as camera:
        frame = camera.snapshot(target)
    data = target.read_bytes()
    assert data[:2] == b"\xff\xd8"  # JPEG SOI, whatever the suffix
    image = cv2.imread(str(target))
    assert image is not None and image.shape == frame.image.shape
    assert float(np.mean(np.abs(image.astype(int) - frame.image.astype(int)))) < 4
    assert frame.time == clock.now()


def test_snapshot_to_an_unwritable_path_is_a_terminal_error(tmp_path: Path, video: Path) -> None:
    with OpenCvCamera(video) as camera, pytest.raises(AtmError, match="snapshot"):
        camera.snapshot(tmp_path / "no" / "such" / "dir" / "snap.jpg")


def test_properties_report_the_file(video: Path) -> None:
    with OpenCvCamera(video) as camera:
        props = camera.properties()
    assert props["width"] == 64 and props["height"] == 48
    assert props["fps"] == pytest.approx(30)
    assert props["frame_count"] == 4


def test_mp4_files_play_too(tmp_path: Path, clock: ManualClock) -> None:
    path = write_video(tmp_path / "cam.mp4", synthetic_frames(3)).path
    with OpenCvCamera(path, clock=clock, loop=True) as camera:
        frames = [camera.capture() for _ in range(4)]
    assert all(f.image.shape == (48, 64, 3) for f in frames)


@pytest.mark.parametrize(
    "options",
    [
        {"source": True},
        {"source": 1.5},
        {"width": 0},
        {"read_timeout": 0},
        {"frozen_frames": 1},
        {"jpeg_quality": 0},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OpenCvCamera(**options)


def test_module_imports_without_opencv() -> None:
    code = (
        "import sys; sys.modules['cv2'] = None\n"
        "from terminal.drivers.camera.opencv import OpenCvCamera\n"
        "from terminal.errors import DeviceUnavailable\n"
        "camera = OpenCvCamera('x.avi')\n"
        "try:\n    camera.open()\nexcept DeviceUnavailable as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "opencv-python-headless" in out.stdout


# -- atm diag camera ----------------------------------------------------------------------


def _config(backend: str, **options: Any) -> Any:
    from terminal.config import DeviceConfig, TerminalConfig

    return TerminalConfig(
        terminal_id="ATM00001", devices={"camera": DeviceConfig(backend, options)}
    )


@pytest.fixture
def opencv_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from terminal.drivers.base import BACKENDS

    monkeypatch.setitem(BACKENDS["camera"], "opencv", "terminal.drivers.camera.opencv:OpenCvCamera")


@pytest.mark.usefixtures("opencv_registered")
def test_diag_reports_resolution_fps_status_and_writes_a_snapshot(
    tmp_path: Path, video: Path
) -> None:
    from terminal.diag.camera import diagnose

    target = tmp_path / "diag.jpg"
    report = diagnose(_config("opencv", source=str(video), loop=True), snapshot=target)
    assert report["status"] == "ok" and report["detail"] is None
    assert (report["width"], report["height"]) == (64, 48)
    assert report["nominal_fps"] == pytest.approx(30) and report["frame_count"] == 4
    assert report["fps"] is None or report["fps"] > 0
    assert report["snapshot"] == str(target)
    written = cv2.imread(str(target))
    assert written is not None and written.shape == (48, 64, 3)


@pytest.mark.usefixtures("opencv_registered")
def test_diag_reports_an_absent_camera_as_offline(tmp_path: Path) -> None:
    from terminal.diag.camera import diagnose

    report = diagnose(_config("opencv", source=str(tmp_path / "gone.avi")))
    assert report["status"] == "offline" and "gone.avi" in report["error"]


def test_diag_works_with_the_sim_camera_too(tmp_path: Path) -> None:
    from terminal.diag.camera import diagnose

    report = diagnose(_config("sim", width=64, height=48), snapshot=tmp_path / "s.jpg")
    assert report["status"] == "ok" and report["frames"] == 10
    written = cv2.imread(str(tmp_path / "s.jpg"))
    assert written is not None and written.shape == (48, 64, 3)


def test_diag_without_a_camera_is_a_config_error() -> None:
    from terminal.config import TerminalConfig
    from terminal.diag.camera import diagnose

    with pytest.raises(ConfigError, match=r"devices\.camera"):
        diagnose(TerminalConfig(terminal_id="ATM00001"))
