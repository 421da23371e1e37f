"""Camera ABC: timestamped frames for face verification and evidence snapshots."""

from __future__ import annotations

import dataclasses
import datetime as dt
from abc import abstractmethod
from typing import Any

from terminal.drivers.base import Device


@dataclasses.dataclass(frozen=True)
class Frame:
    """A captured frame: ``image`` is an HxWx3 BGR array (numpy) as OpenCV gives it."""

    time: dt.datetime
    image: Any
    width: int
    height: int


class Camera(Device):
    kind = "camera"

    def capture(self) -> Frame:
        self._require_open()
        return self._do_capture()

    @abstractmethod
    def _do_capture(self) -> Frame: ...
