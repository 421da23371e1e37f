"""A person in front of a camera moves: a photo played as frames that differ a little.

Shared by the simulator's camera videos (:mod:`sim.devices.camera_video`) and the
terminal's simulated camera showing a chosen photo (``atm run --sim``): the basic
liveness check sees change between consecutive frames, as it would with a person.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from atm_common.face.verify import require_module

Image = NDArray[np.uint8]
# (dx, dy, brightness): consecutive entries differ, so consecutive frames always differ.
VARIATION = ((0, 0, 0), (2, 1, 5), (3, -1, -3), (1, -2, 6), (-2, -1, -4), (-3, 2, 3), (-1, 1, -6))


def vary(image: Image, index: int, scale: float = 1.0) -> Image:
    """Frame ``index`` of the variation cycle: ``image`` shifted and brightened a little.

    ``scale`` multiplies shift and brightness (0 gives the image back unchanged).
    """
    cv2 = require_module("cv2")
    dx, dy, db = (round(v * scale) for v in VARIATION[index % len(VARIATION)])
    out = image
    if dx or dy:
        shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        h, w = image.shape[:2]
        out = np.asarray(cv2.warpAffine(image, shift, (w, h), borderValue=(0, 0, 0)), np.uint8)
    if db:
        out = np.clip(out.astype(np.int16) + db, 0, 255).astype(np.uint8)
    return out
