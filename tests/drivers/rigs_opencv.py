"""Contract rig for the OpenCV camera: :class:`OpenCvCamera` reading a generated video file.

The simulated camera is a real MJPG ``.avi`` written by :mod:`sim.devices.camera_video`
and played with ``loop=True``, so the camera contract runs through ``cv2.VideoCapture``
exactly as a kiosk's webcam does. Frames are small (64x48, as the sim rig's) to stay
fast. The contract's ``frames=`` option becomes a video of those frames; MJPG keeps the
flat test colours exact. The customer handle is the video's :class:`VideoInfo`.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from atm_common.clock import ManualClock
from sim.devices.camera_video import VideoInfo, write_video
from terminal.drivers.base import Device
from terminal.drivers.camera.opencv import OpenCvCamera

_DIR = Path(tempfile.mkdtemp(prefix="rigs-opencv-"))
atexit.register(shutil.rmtree, _DIR, True)
_names = itertools.count(1)
_default: VideoInfo | None = None


def synthetic_frames(count: int = 8, width: int = 64, height: int = 48) -> list[Any]:
    """Distinct BGR frames: a gradient whose blue level steps with the frame number."""
    frames = []
    for n in range(count):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:, :, 0] = 30 * n
        image[:, :, 1] = (np.arange(width) * 255 // width)[None, :]
        image[:, :, 2] = (np.arange(height) * 255 // height)[:, None]
        frames.append(image)
    return frames


def _default_video() -> VideoInfo:
    global _default
    if _default is None:
        _default = write_video(_DIR / "default.avi", synthetic_frames(), fps=30)
    return _default


def build_opencv(clock: ManualClock, **options: Any) -> tuple[Device, VideoInfo]:
    frames = options.pop("frames", None)
    if frames is None:
        video = _default_video()
    else:
        video = write_video(_DIR / f"frames-{next(_names)}.avi", frames, fps=30)
    options.setdefault("loop", True)
    return OpenCvCamera(video.path, clock=clock, **options), video


EXTRA_RIGS = {"camera": {"opencv": build_opencv}}
