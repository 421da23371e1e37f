"""Snapshots the host asked for, taken quietly and sent after the session.

Nothing on screen changes and nothing is journaled: the customer (and whoever stands
behind them) must not be able to tell. Frames are grabbed the moment the request arrives
(a few milliseconds); encoding and sending wait until the session is over, so the
session's timing does not change either.
"""

from __future__ import annotations

import logging
from typing import Any

from host_link.evidence import EvidenceRequest
from terminal.drivers.camera.base import Camera
from terminal.errors import DeviceError

log = logging.getLogger(__name__)

WIDTH = 320  # small enough for a few advices, large enough to see a face
QUALITY = 70


def grab(camera: Camera | None, request: EvidenceRequest) -> list[Any]:
    """Raw frames for ``request`` (none without a camera or when it fails)."""
    if camera is None:
        return []
    frames = []
    for _ in range(request.count):
        try:
            frames.append(camera.capture().image)
        except DeviceError as exc:
            log.warning("camera: %s", exc)
            break
    return frames


def encode(frames: list[Any]) -> list[bytes]:
    """JPEGs of the frames, scaled to WIDTH; none when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        log.warning("snapshots dropped: OpenCV is not installed")
        return []
    out = []
    for image in frames:
        height, width = image.shape[:2]
        if width > WIDTH:
            image = cv2.resize(image, (WIDTH, max(1, round(height * WIDTH / width))))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        if ok:
            out.append(bytes(data))
    return out
