"""QR codes of binding addresses: made with segno, read back with OpenCV's decoder.

The bank app renders the address it got as a PNG (:func:`render_png`), and the payment
app reads it from the image as a camera would (:func:`decode_png`), never from the text
beside it: what is scanned is what the screen shows. OpenCV is the face extra's; it is
imported on first use.
"""

from __future__ import annotations

from pathlib import Path

import segno

from atm_common.errors import AtmError


class QrError(AtmError):
    """No binding address could be read from the image."""


def render_png(address: str, path: str | Path, scale: int = 6) -> Path:
    """Write ``address`` as a QR code PNG (error correction M, quiet zone of 4)."""
    segno.make_qr(address, error="m").save(str(path), kind="png", scale=scale, border=4)
    return Path(path)


def decode_png(path: str | Path) -> str:
    """The text of the one QR code in the image at ``path``."""
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise QrError(f"{path}: not an image that can be read")
    text, points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    if points is None or not text:
        raise QrError(f"{path}: no QR code found in the image")
    return str(text)
