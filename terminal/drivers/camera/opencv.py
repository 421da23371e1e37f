"""OpenCV camera backend: a USB/V4L2 camera, an RTSP/HTTP stream, or a video file.

Why one class for all three: ``cv2.VideoCapture`` reads them all, so the simulated camera
is simply a real video file (``loop=True`` rewinds it at its end) and CI runs the very
code a kiosk runs (principle 1). Files are made by :mod:`sim.devices.camera_video`.

OpenCV is imported on :meth:`open`, not at import time, so a kiosk without it still
starts; opening then fails with a :class:`DeviceUnavailable` that names the package.

Errors, in the project's tree:

* no camera at that index, no such file, a stream that cannot be reached, OpenCV
  missing: :class:`DeviceUnavailable` naming the source;
* a file that exists but does not decode (corrupt, truncated, unknown codec):
  :class:`DeviceFault`;
* no frame (a live source fell silent for ``read_timeout`` s, the end of a file played
  without ``loop``): :class:`DeviceTimeout`. Status is then FAULT until a frame arrives.

Frozen stream: a sensor never delivers two bit-identical frames, a stalled driver or a
still image does. After ``frozen_frames`` identical frames spanning at least
``frozen_after`` seconds of the injected clock, status is DEGRADED and
:attr:`status_detail` says "frozen stream". Frames are compared by CRC-32 (about 1 ms at
720p), so a caller drawing on a returned image cannot fake or hide a freeze.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError
from atm_common.files import write_private
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.camera.base import Camera, Frame
from terminal.errors import DeviceError, DeviceFault, DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)

Source = int | str | os.PathLike[str]


def _cv2(kind: str) -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise DeviceUnavailable(
            kind, "OpenCV is not installed: pip install 'opencv-python-headless<5'"
        ) from exc
    return cv2


class OpenCvCamera(Camera):
    """Frames from ``source``: a device index (``0``), a file path or a stream URL."""

    def __init__(
        self,
        source: Source = 0,
        clock: Clock | None = None,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        frozen_after: float | None = 2.0,
        frozen_frames: int = 3,
        read_timeout: float = 5.0,
        jpeg_quality: int = 90,
    ) -> None:
        super().__init__()
        if isinstance(source, bool) or not isinstance(source, int | str | os.PathLike):
            raise ConfigError("config", "devices.camera.source", f"bad source {source!r}")
        if (width is not None and width <= 0) or (height is not None and height <= 0):
            raise ConfigError("config", "devices.camera", f"bad frame size {width}x{height}")
        if read_timeout <= 0 or frozen_frames < 2 or not 1 <= jpeg_quality <= 100:
            raise ConfigError(
                "config",
                "devices.camera",
                "needs read_timeout > 0, frozen_frames >= 2 and jpeg_quality 1..100",
            )
        self._clock: Clock = clock if clock is not None else SystemClock()
        if isinstance(source, str) and source.isdigit():
            source = int(source)
        self._source: int | str = source if isinstance(source, int) else os.fspath(source)
        if isinstance(self._source, int) or self._source.startswith("/dev/"):
            self.source_kind = "device"
        elif "://" in self._source:
            self.source_kind = "stream"
        else:
            self.source_kind = "file"
        self.loop, self.width, self.height = loop, width, height
        self.frozen_after, self.frozen_frames = frozen_after, frozen_frames
        self.read_timeout, self.jpeg_quality = read_timeout, jpeg_quality
        self._cap: Any = None
        self._pending: Any = None  # a file's first frame, read by open() to prove it decodes
        self._fault: str | None = None
        self._digest: tuple[tuple[int, ...], int] | None = None
        self._same = 0
        self._run_start = self._run_last = 0.0
        self._was_frozen = False
        self._frames_read = 0
        self._rewinds = 0

    def __repr__(self) -> str:
        return f"OpenCvCamera({self._source!r}, {self.source_kind}, loop={self.loop})"

    @property
    def source(self) -> int | str:
        return self._source

    @property
    def frames_read(self) -> int:
        """Frames delivered so far (rewinds included)."""
        return self._frames_read

    @property
    def frozen(self) -> bool:
        """The last ``frozen_frames``+ frames were identical and spanned ``frozen_after`` s."""
        if self.frozen_after is None or self._same < self.frozen_frames:
            return False
        return self._run_last - self._run_start >= self.frozen_after

    @property
    def status_detail(self) -> str | None:
        """Why the status is not OK (``"frozen stream: ..."``, the last fault), else None."""
        if self._fault is not None:
            return self._fault
        if self.frozen:
            return f"frozen stream: {self._same} identical frames"
        return None

    def properties(self) -> dict[str, Any]:
        """What OpenCV reports: actual frame size, nominal fps, frame count, backend."""
        self._require_open()
        cv2 = _cv2(self.kind)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        return {
            "width": int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": fps if fps > 0 else None,
            "frame_count": count if self.source_kind == "file" and count > 0 else None,
            "backend": str(self._cap.getBackendName()),
        }

    def snapshot(self, path: str | os.PathLike[str]) -> Frame:
        """Capture a frame now and write it to ``path`` as JPEG (whatever the suffix)."""
        cv2 = _cv2(self.kind)
        frame = self.capture()
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        ok, data = cv2.imencode(".jpg", frame.image, quality)
        if not ok:
            raise DeviceFault(self.kind, f"{self._source}: frame could not be JPEG-encoded")
        if not Path(path).parent.is_dir():  # a typo'd folder is an error, not a new tree
            raise AtmError(f"cannot write snapshot {path}: no such directory")
        try:
            write_private(path, data.tobytes())  # a face is personal data: 0600
        except OSError as exc:
            raise AtmError(f"cannot write snapshot {path}: {exc.strerror or exc}") from exc
        log.info("camera snapshot %s (%dx%d)", path, frame.width, frame.height)
        return frame

    # -- hooks -----------------------------------------------------------------------------

    def _do_open(self) -> None:
        cv2 = _cv2(self.kind)
        if self.source_kind == "file" and not Path(str(self._source)).is_file():
            raise DeviceUnavailable(self.kind, f"no such video file: {self._source}")
        timeout_ms = round(self.read_timeout * 1000)
        if self.source_kind == "device":
            cap = cv2.VideoCapture(self._source)
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms)  # honoured where supported
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms]
            cap = cv2.VideoCapture(
                self._source, cv2.CAP_ANY, [*params, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            )
        if not cap.isOpened():
            cap.release()
            raise self._open_error()
        if self.source_kind != "file":
            if self.width is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height is not None:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            if self.source_kind == "file":
                raise DeviceFault(self.kind, f"{self._source}: no decodable frame (corrupt file?)")
            raise DeviceTimeout(self.kind, f"{self._source}: opened but sent no frame")
        self._cap = cap
        self._pending = image if self.source_kind == "file" else None
        log.info("camera %s open: %dx%d", self._source, image.shape[1], image.shape[0])

    def _open_error(self) -> DeviceError:
        if self.source_kind == "device":
            return DeviceUnavailable(self.kind, f"no camera at {self._source!r} (connected?)")
        if self.source_kind == "stream":
            return DeviceUnavailable(self.kind, f"cannot open stream {self._source}")
        return DeviceFault(
            self.kind, f"{self._source}: not a readable video (corrupt or unsupported codec)"
        )

    def _do_close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None

    def _do_status(self) -> DeviceStatus:
        if self._fault is not None:
            return DeviceStatus.FAULT
        return DeviceStatus.DEGRADED if self.frozen else DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        """The source and what OpenCV reports of it: frame size, nominal fps, its backend."""
        properties = self.properties()
        info: dict[str, InfoValue] = {
            "source": str(self._source),
            "source_type": self.source_kind,
            "resolution": f"{properties['width']}x{properties['height']}",
        }
        if properties["fps"] is not None:
            info["fps"] = round(properties["fps"], 2)
        if properties["frame_count"] is not None:
            info["frame_count"] = properties["frame_count"]
        info["opencv_backend"] = properties["backend"]
        return info

    def _do_counter_values(self) -> dict[str, int]:
        return {"frames_read": self._frames_read, "rewinds": self._rewinds}

    def _do_last_error(self) -> str | None:
        return f"{self.kind}: {self.status_detail}" if self.status_detail else None

    def _do_capture(self) -> Frame:
        image, self._pending = self._pending, None
        if image is None:
            image = self._read()
        image = self._bgr(image)
        self._track(image)
        self._fault = None
        self._frames_read += 1
        height, width = image.shape[:2]
        return Frame(time=self._clock.now(), image=image, width=width, height=height)

    # -- internals -------------------------------------------------------------------------

    def _read(self) -> Any:
        ok, image = self._cap.read()
        if ok and image is not None:
            return image
        if self.source_kind == "file" and self.loop and self._frames_read > 0:
            cv2 = _cv2(self.kind)
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._rewinds += 1
            ok, image = self._cap.read()
            if ok and image is not None:
                log.debug("camera %s rewound (%d)", self._source, self._rewinds)
                return image
            self._fault = f"{self._source}: cannot rewind the video file"
            raise DeviceFault(self.kind, self._fault)
        if self.source_kind == "file":
            self._fault = f"{self._source}: end of video file (set loop=True to rewind)"
        else:
            self._fault = f"{self._source}: no frame within {self.read_timeout:g} s"
        log.warning("camera: %s", self._fault)
        raise DeviceTimeout(self.kind, self._fault)

    def _bgr(self, image: Any) -> Any:
        """Some devices deliver grey or BGRA; the Camera contract is HxWx3 BGR."""
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        cv2 = _cv2(self.kind)
        code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(image, code)

    def _track(self, image: Any) -> None:
        """Count a run of identical frames, timed by the injected clock."""
        digest = (tuple(image.shape), zlib.crc32(memoryview(image.reshape(-1))))
        now = self._clock.monotonic()
        if digest == self._digest:
            self._same += 1
        else:
            self._digest, self._same, self._run_start = digest, 1, now
        self._run_last = now
        frozen = self.frozen
        if frozen and not self._was_frozen:
            log.warning("camera %s: frozen stream (%d identical frames)", self._source, self._same)
        self._was_frozen = frozen
