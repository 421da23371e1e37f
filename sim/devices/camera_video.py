"""Real video files for the simulated camera, built from photos.

Why: the terminal's OpenCV camera driver reads a video file exactly as it reads a webcam
(``OpenCvCamera(path, loop=True)``), so the simulated camera is a file on the far side of
``cv2.VideoCapture`` and CI runs the real driver (principle 1). This module writes those
files with ``cv2.VideoWriter``:

* each photo is letterboxed into a ``size`` frame (1280x720 by default): scaled to fit,
  black bars, never stretched, because a stretched face defeats detection;
* :func:`make_camera_video` adds a small, deterministic per-frame variation (a shift of a
  few pixels and a brightness step, different between any two consecutive frames), as a
  person in front of a camera moves: the basic liveness check sees change;
* :func:`make_held_photo_video` repeats one frame unchanged: a photo held up to the
  camera (or a frozen stream), the liveness check's negative case.

Codec from the suffix: ``.avi`` MJPG (intra-frame, exact for flat colours, fast to seek
back at a rewind), ``.mp4`` mp4v. Both read back with ``cv2.VideoCapture`` (1-2 ms a
frame here). Run as ``python -m sim.devices.camera_video OUT PHOTO... [--static]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from atm_common.errors import AtmError, ConfigError
from atm_common.face.frames import vary
from atm_common.face.verify import ImageInput, as_bgr, letterbox, require_module

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]
CODECS = {".avi": "MJPG", ".mp4": "mp4v"}


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What was written: enough to configure an OpenCvCamera and assert on it."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    codec: str


def write_video(
    path: str | os.PathLike[str], frames: Iterable[Image], fps: float = 15.0
) -> VideoInfo:
    """Write BGR ``frames`` (all one size) with the codec of ``path``'s suffix."""
    cv2 = require_module("cv2")
    target = Path(path)
    codec = CODECS.get(target.suffix.lower())
    if codec is None:
        raise ConfigError(str(target), "", f"video suffix must be one of {sorted(CODECS)}")
    if fps <= 0:
        raise ConfigError(str(target), "fps", f"must be > 0, got {fps}")
    writer = None
    count, size = 0, (0, 0)
    try:
        for frame in frames:
            image = as_bgr(frame)
            if writer is None:
                size = (image.shape[1], image.shape[0])
                target.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*codec), fps, size)
                if not writer.isOpened():
                    raise ConfigError(str(target), "", f"OpenCV cannot write {codec} here")
            elif (image.shape[1], image.shape[0]) != size:
                raise ConfigError(str(target), "", f"frame {count} is not {size[0]}x{size[1]}")
            writer.write(image)
            count += 1
    except BaseException:
        if writer is not None:
            writer.release()
            target.unlink(missing_ok=True)  # no half-written video for a camera to play
        raise
    if writer is not None:
        writer.release()
    if count == 0:
        raise ConfigError(str(target), "", "no frames to write")
    log.info("wrote %s: %d frames %dx%d %s at %g fps", target, count, *size, codec, fps)
    return VideoInfo(target, count, size[0], size[1], fps, codec)


def photo_frames(
    photos: Sequence[ImageInput],
    size: tuple[int, int] = (1280, 720),
    frames_per_photo: int = 15,
    variation: float = 1.0,
) -> Iterator[Image]:
    """Each photo letterboxed into ``size``, ``frames_per_photo`` times, varied by ``variation``."""
    if not photos or frames_per_photo < 1:
        raise ConfigError("camera video", "photos", "need at least one photo and one frame each")
    index = 0
    for photo in photos:
        base = letterbox(photo, *size)
        for _ in range(frames_per_photo):
            yield vary(base, index, variation) if variation else base
            index += 1


def make_camera_video(
    path: str | os.PathLike[str],
    photos: Sequence[ImageInput],
    *,
    size: tuple[int, int] = (1280, 720),
    frames_per_photo: int = 15,
    fps: float = 15.0,
    variation: float = 1.0,
) -> VideoInfo:
    """A "person in front of the camera" video: each photo in turn, moving slightly."""
    return write_video(path, photo_frames(photos, size, frames_per_photo, variation), fps)


def make_held_photo_video(
    path: str | os.PathLike[str],
    photo: ImageInput,
    *,
    size: tuple[int, int] = (1280, 720),
    frames: int = 15,
    fps: float = 15.0,
) -> VideoInfo:
    """A "photo held up" video: one letterboxed frame repeated, bit for bit."""
    return make_camera_video(
        path, [photo], size=size, frames_per_photo=frames, fps=fps, variation=0.0
    )


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a video file for the simulated camera.")
    parser.add_argument("out", help="output .avi (MJPG) or .mp4 (mp4v)")
    parser.add_argument("photos", nargs="+", help="photos, letterboxed in turn")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="WxH, default 1280x720")
    parser.add_argument("--frames", type=int, default=15, help="frames per photo")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--static", action="store_true", help="identical frames (photo held up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        make_camera_video(
            args.out,
            args.photos,
            size=args.size,
            frames_per_photo=args.frames,
            fps=args.fps,
            variation=0.0 if args.static else 1.0,
        )
    except AtmError as exc:
        parser.exit(2, f"camera_video: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
