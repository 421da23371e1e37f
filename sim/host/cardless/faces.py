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
import sqlite3
from typing import TYPE_CHECKING

from sim.host.cardless.errors import Unavailable, Unprocessable

if TYPE_CHECKING:
    from atm_common.face.verify import FaceTemplate

MAX_IMAGE_BYTES = 8 * 1024 * 1024


def enrol_face(
    conn: sqlite3.Connection, person_id: str, template_text: str, source: str, at: str
) -> None:
    """Store (or replace) a person's enrolled face template."""
    conn.execute(
        "INSERT OR REPLACE INTO face_templates VALUES (?,?,?,?)",
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


def probe_template(image_b64: str, tolerance: float) -> FaceTemplate:
    """The template of the one face in a base64 JPEG/PNG (CPU-heavy: run it off the
    event loop). Anything unusable is :class:`Unprocessable`; no engine, 503."""
    try:
        data = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("image_base64 is not valid base64") from None
    if not data:
        raise Unprocessable("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise Unprocessable(f"the image is over {MAX_IMAGE_BYTES} bytes")
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
    """What the phone is told after a face comparison (``POST .../face``)."""

    match: bool
    distance: float
    tolerance: float
    attempts_left: int
    status: str
