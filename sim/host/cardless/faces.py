"""Faces at the bank: the templates enrolled for people, and the template of a photo.

Only templates are stored (``face_templates``), never a photo. The face engine (numpy,
OpenCV, dlib) is imported only when a face is involved, so a host without it still runs
everything else: code-only reservations, cards, the seed (whose ``face_photo`` people are
then left unenrolled). Both sides compare against the enrolled template: the phone step
(:mod:`.phone`) and the ATM's check (:mod:`.iso`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import sqlite3
from typing import TYPE_CHECKING

from sim.host.cardless.errors import Unavailable, Unprocessable

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate

MAX_IMAGE_BYTES = 8 * 1024 * 1024
# What a decoded photo may have: 4096 x 4096 is above any phone's 12 MP selfie and
# decodes to 48 MB of BGR; a few KB of PNG can claim 12000 x 12000 (432 MB decoded).
MAX_IMAGE_PIXELS = 4096 * 4096
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def enrol_face(
    conn: sqlite3.Connection, person_id: str, template_text: str, source: str, at: str
) -> None:
    """Store (or replace) a person's enrolled face template."""
    conn.execute(
        "INSERT INTO face_templates VALUES (?,?,?,?) ON CONFLICT (person_id) DO UPDATE SET"
        " template = excluded.template, source = excluded.source,"
        " enrolled_at = excluded.enrolled_at",
        (person_id, template_text, source, at),
    )


def load_template(text: str) -> FaceTemplate:
    """Import the face module only when a face is involved: hosts without numpy run."""
    from atm_common.face.verify import FaceTemplate

    return FaceTemplate.from_text(text)


def enrolled_template(conn: sqlite3.Connection, person_id: str) -> FaceTemplate | None:
    """The person's enrolled template, or None when none is enrolled."""
    enrolled = conn.execute(
        "SELECT template FROM face_templates WHERE person_id = ?", (person_id,)
    ).fetchone()
    return None if enrolled is None else load_template(enrolled["template"])


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG or PNG header alone, nothing decoded.

    Why: the size of the file says nothing about the size of the image (PNG compresses a
    plain 12000 x 12000 image to 140 KB), and the decoder allocates width x height x 3
    bytes before it looks at a pixel. Pillow's plugins parse just the header (IHDR; the
    markers up to SOF), and only these two formats are let through to OpenCV, whose
    decoder would accept many more.
    """
    try:
        from PIL import JpegImagePlugin, PngImagePlugin
    except ImportError as exc:
        raise Unavailable(f"face verification is not installed here: {exc}") from None
    reader: type[JpegImagePlugin.JpegImageFile] | type[PngImagePlugin.PngImageFile]
    if data.startswith(_PNG):
        reader = PngImagePlugin.PngImageFile
    elif data.startswith(_JPEG):
        reader = JpegImagePlugin.JpegImageFile
    else:
        raise Unprocessable("not a readable image (corrupt or not JPEG/PNG)")
    try:
        with reader(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # whatever a parser of untrusted bytes raises: not a usable header
        raise Unprocessable("not a readable image (corrupt or not JPEG/PNG)") from None
    return width, height


def probe_template(image_b64: str, tolerance: float) -> FaceTemplate:
    """The template of the one face in a base64 JPEG/PNG (CPU-heavy: run it off the
    event loop). Anything unusable is :class:`Unprocessable`; no engine, 503. The pixel
    count is checked from the header before anything is decoded."""
    try:
        data = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("image_base64 is not valid base64") from None
    if not data:
        raise Unprocessable("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise Unprocessable(f"the image is over {MAX_IMAGE_BYTES} bytes")
    width, height = image_size(data)
    if width * height > MAX_IMAGE_PIXELS:
        raise Unprocessable(
            f"the image is {width} x {height}: at most {MAX_IMAGE_PIXELS} pixels, send a"
            " smaller photo"
        )
    try:
        import numpy as np

        from atm_common.face.verify import (
            FaceEngineUnavailable,
            FaceError,
            FaceVerifier,
            NoFace,
            SeveralFaces,
            require_module,
        )
    except ImportError as exc:
        raise Unavailable(f"face verification is not installed here: {exc}") from None
    try:
        cv2 = require_module("cv2")
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise Unprocessable("not a readable image (corrupt or not JPEG/PNG)")
        if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:  # the header lied
            raise Unprocessable("the image is larger than its header says")
        return FaceVerifier(tolerance).template(np.asarray(image, dtype=np.uint8))
    except FaceEngineUnavailable as exc:
        raise Unavailable(str(exc)) from None
    except NoFace:
        raise Unprocessable("no face found in the image: look straight at the camera") from None
    except SeveralFaces as exc:
        raise Unprocessable(f"{exc.faces} faces in the image: exactly one is needed") from None
    except FaceError as exc:
        raise Unprocessable(f"unusable image: {exc}") from None


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """What the phone is told after a face comparison (``POST .../face``): match or no
    match, never how close (a distance would guide an impostor's next photo)."""

    match: bool
    attempts_left: int
    status: str
