"""Reading a binding QR code, as the payment app's camera would: OpenCV's decoder.

The bank renders the address as a PNG (the bank app: :func:`sim.phone.binding.render_png`;
the ATM: :mod:`terminal.session.binding`), and the payment app reads it from the image
(:func:`decode_png`), never from the text beside it: what is scanned is what the screen
shows. OpenCV is the face extra's; it is imported on first use.
"""

from __future__ import annotations

from pathlib import Path

from atm_common.errors import AtmError


class QrError(AtmError):
    """No binding address could be read from the image."""


def decode_png(path: str | Path) -> str:
    """The text of the one QR code in the image at ``path``."""
    import cv2
    import numpy as np

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise QrError(f"{path}: cannot read: {exc.strerror}") from None
    # decoded from memory: cv2.imread would print its own warning for a bad file
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise QrError(f"{path}: not an image that can be read")
    # OpenCV's detector misses a few percent of codes at one size that it reads at
    # another: look again closer and with more margin, as a camera moved back would
    white = (255, 255, 255)
    views = (
        image,
        cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST),
        cv2.copyMakeBorder(image, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=white),
        cv2.GaussianBlur(image, (3, 3), 0),
    )
    detectors: list[cv2.QRCodeDetector | cv2.QRCodeDetectorAruco] = [cv2.QRCodeDetector()]
    if hasattr(cv2, "QRCodeDetectorAruco"):  # OpenCV's second detector, another method
        detectors.append(cv2.QRCodeDetectorAruco())
    for detector in detectors:
        for view in views:
            text, points, _ = detector.detectAndDecode(view)
            if points is not None and text:
                return str(text)
    raise QrError(f"{path}: no QR code found in the image")
