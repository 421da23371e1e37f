"""In-process simulated camera.

Why it exists: face verification and evidence snapshots need frames in CI without a
webcam or OpenCV. Given ``frames`` (e.g. images loaded by a test), it plays them in a
loop; given none, it draws a synthetic BGR frame with numpy - imported only when such a
frame is drawn, so a kiosk without numpy can still load the module. Timestamps come from
the injected clock, so evidence records replay exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.camera.base import Camera, Frame

log = logging.getLogger(__name__)


class SimCamera(Camera):
    """Plays ``frames`` in a loop, or synthesises ``width`` x ``height`` frames."""

    blocking = False  # in-process state: nothing to wait on

    def __init__(
        self,
        clock: Clock | None = None,
        frames: Sequence[Any] | None = None,
        width: int = 640,
        height: int = 480,
        photo: str = "",
    ) -> None:
        """``photo``: an image file the camera sees (a person standing still in front of
        it, moving a little), as :meth:`show_photo`; "" draws synthetic frames."""
        super().__init__()
        if width <= 0 or height <= 0:
            raise ConfigError("config", "devices.camera", f"bad frame size {width}x{height}")
        if frames is not None and len(frames) == 0:
            raise ConfigError("config", "devices.camera.frames", "empty; omit it for synthetic")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._frames = list(frames) if frames is not None else None
        self.width, self.height = width, height
        self._captured = 0
        if photo:
            self.show_photo(photo)

    def __repr__(self) -> str:
        source = f"{len(self._frames)} frames" if self._frames is not None else "synthetic"
        return f"SimCamera({source}, {self.width}x{self.height}, captured={self._captured})"

    def show(self, frames: Sequence[Any] | None) -> None:
        """Someone steps in front of the camera: these frames from now on (None: nobody)."""
        if frames is not None and len(frames) == 0:
            raise ConfigError("config", "devices.camera.frames", "empty; pass None for synthetic")
        self._frames = list(frames) if frames is not None else None

    def show_photo(self, path: str) -> None:
        """A person, from the photo at ``path``, in front of the camera from now on: the
        photo played with the small moves a person makes, so the liveness check sees one.
        Needs the face extra (OpenCV); a file it cannot read is a ConfigError."""
        from atm_common.errors import AtmError
        from atm_common.face.frames import VARIATION, vary  # the optional engine, lazily
        from atm_common.face.verify import load_image

        try:
            image = load_image(path)
        except AtmError as exc:
            raise ConfigError("config", "devices.camera.photo", str(exc)) from None
        self.show([vary(image, index) for index in range(len(VARIATION))])

    @property
    def captured(self) -> int:
        """Frames delivered so far."""
        return self._captured

    def _do_status(self) -> DeviceStatus:
        return DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        source = f"{len(self._frames)} frames" if self._frames is not None else "synthetic"
        return {"source": source, "resolution": f"{self.width}x{self.height}"}

    def _do_counter_values(self) -> dict[str, int]:
        return {"frames_captured": self._captured}

    def _do_capture(self) -> Frame:
        n = self._captured
        self._captured += 1
        if self._frames is None:
            image = self._synthetic(n)
            height, width = self.height, self.width
        else:
            image = self._frames[n % len(self._frames)]
            shape = getattr(image, "shape", None)
            height, width = (int(shape[0]), int(shape[1])) if shape else (self.height, self.width)
        return Frame(time=self._clock.now(), image=image, width=width, height=height)

    def _synthetic(self, n: int) -> Any:
        """A BGR gradient whose blue channel encodes the frame number, so frames differ."""
        import numpy as np  # lazy: only synthetic frames need it

        image = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        image[:, :, 0] = n % 256
        image[:, :, 1] = (np.arange(self.width, dtype=np.uint32) * 255 // self.width)[None, :]
        image[:, :, 2] = (np.arange(self.height, dtype=np.uint32) * 255 // self.height)[:, None]
        return image
