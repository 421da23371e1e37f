"""``atm diag camera``: is the camera delivering, and does face verification work here?

Why: a field engineer must tell "no camera" from "camera frozen" from "face check
misconfigured" without a debugger. Two library functions, no CLI wiring:

* :func:`diagnose` (``atm diag camera [--snapshot PATH] [--json]``) opens the configured
  camera, captures a few frames, measures the frame rate, optionally saves one frame as
  JPEG, and reports resolution, fps and status. A camera that cannot be opened or fails
  is reported (``status`` offline and the ``error``), not raised: that is the diagnosis.
* :func:`verify_images` (``atm diag camera --verify --enrolled IMG --probe IMG --json``)
  runs the terminal's own verifier on two image files and answers
  ``{"faces": n, "match": bool, "distance": float}``. A probe without exactly one face
  is a finding (``faces`` 0 or 2+, ``match`` false, ``distance`` null, ``error``); an
  unreadable file or an enrolment photo without exactly one face raises, since the
  engineer has to pick other files.

OpenCV and face_recognition are imported only inside these functions' callees.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError
from atm_common.files import write_private
from terminal.config import TerminalConfig
from terminal.drivers.base import create_device
from terminal.drivers.camera.base import Camera, Frame
from terminal.errors import DeviceError

log = logging.getLogger(__name__)


def open_camera(config: TerminalConfig, clock: Clock | None = None) -> Camera:
    """Build (not open) the configured camera; no camera configured is a ConfigError."""
    section = config.devices.get("camera")
    if section is None:
        raise ConfigError(config.source, "devices.camera", "no camera is configured")
    options: dict[str, Any] = {"clock": clock or SystemClock(), **section.options}
    device = create_device("camera", section.backend, **options)
    if not isinstance(device, Camera):
        raise ConfigError(config.source, "devices.camera.backend", "not a camera backend")
    return device


def save_jpeg(frame: Frame, path: str | os.PathLike[str], quality: int = 90) -> None:
    """Write ``frame`` as JPEG (any backend's frames, so the sim camera can be checked too)."""
    from atm_common.face.verify import require_module

    cv2 = require_module("cv2")
    ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise AtmError(f"cannot JPEG-encode a {frame.width}x{frame.height} frame")
    try:
        write_private(path, data.tobytes())  # a face is personal data: 0600
    except OSError as exc:
        raise AtmError(f"cannot write snapshot {path}: {exc.strerror or exc}") from exc


def camera_report(
    camera: Camera,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    frames: int = 10,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Capture ``frames`` frames from an opened camera; report what a field engineer checks.

    Keys: ``device``, ``backend``, ``status``, ``detail`` (why not OK, if known), ``width``,
    ``height``, ``frames``, ``fps`` (measured over the captures with ``clock``; None if the
    clock did not move), ``nominal_fps`` and ``frame_count`` (OpenCV's view, when known),
    ``snapshot`` (the JPEG written, if asked).
    """
    from terminal.drivers.camera.opencv import OpenCvCamera  # imports no OpenCV by itself

    clock = clock if clock is not None else SystemClock()
    start = clock.monotonic()
    captured = [camera.capture() for _ in range(max(1, frames))]
    elapsed = clock.monotonic() - start
    last = captured[-1]
    report: dict[str, Any] = {
        "device": repr(camera),
        "backend": type(camera).__name__,
        "status": camera.status().value,
        "detail": getattr(camera, "status_detail", None),
        "width": last.width,
        "height": last.height,
        "frames": len(captured),
        "fps": round((len(captured) - 1) / elapsed, 1) if elapsed > 0 and frames > 1 else None,
    }
    if isinstance(camera, OpenCvCamera):
        properties = camera.properties()
        report["nominal_fps"] = properties["fps"]
        report["frame_count"] = properties["frame_count"]
    if snapshot is not None:
        save_jpeg(last, snapshot)
        report["snapshot"] = str(snapshot)
        log.info("camera snapshot written to %s", snapshot)
    return report


def diagnose(
    config: TerminalConfig,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    frames: int = 10,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """``atm diag camera``: open the configured camera, :func:`camera_report`, close it."""
    clock = clock if clock is not None else SystemClock()
    camera = open_camera(config, clock)
    try:
        with camera:
            return camera_report(camera, snapshot=snapshot, frames=frames, clock=clock)
    except DeviceError as exc:
        log.warning("camera diagnosis: %s", exc)
        return {"device": repr(camera), "status": "offline", "error": str(exc)}


def verify_images(
    enrolled: str | os.PathLike[str],
    probe: str | os.PathLike[str],
    *,
    tolerance: float = 0.5,
) -> dict[str, Any]:
    """``atm diag camera --verify``: ``{"faces": n, "match": bool, "distance": float}``.

    The enrolment photo is turned into a template and sent through the same text form the
    host link carries (``to_text``/``from_text``), so the check covers the wire format too.
    """
    from atm_common.face.verify import FaceCountError, FaceTemplate, FaceVerifier

    verifier = FaceVerifier(tolerance=tolerance)
    try:
        template = verifier.template(enrolled)
    except FaceCountError as exc:
        raise type(exc)(exc.faces, f"enrolled image {enrolled}: {exc}") from exc
    wire = FaceTemplate.from_text(template.to_text())
    try:
        return verifier.verify(probe, wire).as_dict()
    except FaceCountError as exc:
        return {"faces": exc.faces, "match": False, "distance": None, "error": str(exc)}
