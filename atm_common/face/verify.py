"""1:1 face verification (face_recognition on dlib), tuned for a 2-core kiosk CPU.

Why this shape:

* **Exactly one face.** A template or a probe with no face raises :class:`NoFace`, with
  two or more :class:`SeveralFaces` (a second person at the customer's shoulder is not
  ours to guess about). Both carry ``faces``; nothing returns a half-result.
* **Detect small, encode big.** HOG detection costs grow with pixels (about 350 ms on a
  720p frame with upsample 1, measured here), the encoding does not. So the input is
  scaled to fit ``frame_size`` (aspect ratio kept, never stretched), shrunk by
  ``detect_scale``, converted to grey (HOG needs no colour: about 25 % faster), and the
  boxes found there are mapped back; the 128-d encoding is computed on the full-resolution
  image. The detection copy gets no black bars: :func:`letterbox` pads to a fixed frame
  for files and screens, but bars would only add pixels for HOG to scan.
* **Stricter than the library.** ``tolerance`` 0.5 instead of face_recognition's 0.6: an
  ATM prefers asking a genuine customer again to letting an impostor through. Measured
  here: obama/obama2 0.35, obama/biden 0.84.
* **A compact, checked wire form.** :meth:`FaceTemplate.to_text` is ``FT1:`` + base64 of
  the vector as 128 little-endian float16 (the quantisation moves a distance by about
  0.001) + a 4-byte BLAKE2b checksum: 352 characters for ISO 8583 field 63 (999 max).
  The checksum catches damage in transit; the message MAC is what stops an attacker.
  Templates are quantised when made, so a template equals its own round trip.
* **Liveness, honestly basic.** :meth:`FaceVerifier.liveness` only asks whether the face
  region changes across frames. It rejects a frozen stream, an injected still image and
  a photo on a stand; a photo waved by hand, a phone replaying a video or a mask pass.
  It is a tripwire, not presentation-attack detection (ISO/IEC 30107); its threshold was
  set on generated video and needs calibrating on the kiosk's real camera.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import importlib
import itertools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from atm_common.errors import AtmError, ConfigError

log = logging.getLogger(__name__)


@runtime_checkable
class Frame(Protocol):
    """Anything carrying an ``image`` (a camera frame): the foundation knows no drivers."""

    @property
    def image(self) -> Any: ...


Image = NDArray[np.uint8]
ImageInput = NDArray[np.uint8] | Frame | str | os.PathLike[str]
Box = tuple[int, int, int, int]  # top, right, bottom, left: face_recognition's order

TEMPLATE_VERSION = "FT1"
TEMPLATE_DIMS = 128
_CHECKSUM_BYTES = 4
_BODY_CHARS = 4 * math.ceil((TEMPLATE_DIMS * 2 + _CHECKSUM_BYTES) / 3)
TEMPLATE_TEXT_CHARS = len(TEMPLATE_VERSION) + 1 + _BODY_CHARS
FIELD_63_MAX = 999
_FLOAT16_MAX = float(np.finfo(np.float16).max)
INSTALL_HINT = (
    "pip install 'opencv-python-headless<5' dlib-bin face-recognition-models 'setuptools<82' "
    "&& pip install --no-deps face-recognition==1.3.0"
)


class FaceError(AtmError):
    """A face could not be used for verification."""


class FaceEngineUnavailable(FaceError):
    """OpenCV or face_recognition (or its dlib / models) is not installed."""


class ImageError(FaceError):
    """An image file is missing, unreadable or corrupt, or an array is not an image."""


class TemplateError(FaceError):
    """A serialised face template is malformed, of another version, or damaged."""


class FaceCountError(FaceError):
    """Exactly one face is required; ``faces`` says how many were found."""

    def __init__(self, faces: int, message: str) -> None:
        self.faces = faces
        super().__init__(message)


class NoFace(FaceCountError):
    """No face was found."""


class SeveralFaces(FaceCountError):
    """More than one face was found."""


_modules: dict[str, Any] = {}


def require_module(name: str) -> Any:
    """Import ``cv2`` or ``face_recognition`` on first use, as a clear error if missing."""
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise FaceEngineUnavailable(f"cannot import {name} ({exc}); {INSTALL_HINT}") from exc
        except SystemExit as exc:  # face_recognition calls quit() if its models are missing
            raise FaceEngineUnavailable(
                f"{name} could not load its models (face-recognition-models and setuptools<82 "
                f"provide them); {INSTALL_HINT}"
            ) from exc
    return _modules[name]


def as_bgr(image: Any) -> Image:
    """An HxWx3 uint8 BGR array from a BGR(A) or grey array; anything else is an ImageError."""
    cv2 = require_module("cv2")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        raise ImageError(f"not an 8-bit image array: {type(image).__name__}")
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ImageError(f"not an image: array of shape {image.shape}")


def load_image(path: str | os.PathLike[str]) -> Image:
    """Read an image file as BGR (as OpenCV and the camera deliver frames)."""
    cv2 = require_module("cv2")
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ImageError(f"{file}: cannot read image: {exc.strerror or exc}") from exc
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if decoded is None:
        raise ImageError(f"{file}: not a readable image (corrupt, empty or unsupported format)")
    return np.asarray(decoded, dtype=np.uint8)


def _as_image(image: ImageInput) -> Image:
    """A BGR array from an array, a camera :class:`Frame` or an image file path."""
    if isinstance(image, Frame):
        return as_bgr(image.image)
    return load_image(image) if isinstance(image, str | os.PathLike) else as_bgr(image)


def fit_scale(width: int, height: int, box_width: int, box_height: int) -> float:
    """The one factor that fits a ``width`` x ``height`` image into the box: no stretching."""
    return min(box_width / width, box_height / height)


def letterbox(image: ImageInput, width: int = 1280, height: int = 720) -> Image:
    """``image`` scaled to fit ``width`` x ``height`` (aspect kept), centred on black bars.

    Why: a stretched face has the wrong geometry and HOG misses it; bars keep it true.
    """
    cv2 = require_module("cv2")
    img = _as_image(image)
    h, w = img.shape[:2]
    scale = fit_scale(w, h, width, height)
    new_w, new_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = np.asarray(cv2.resize(img, (new_w, new_h), interpolation=interpolation), np.uint8)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    canvas[y : y + new_h, x : x + new_w] = img
    return canvas


@dataclasses.dataclass(frozen=True, eq=False)
class FaceTemplate:
    """A 128-d face encoding, quantised to float16 precision (see the module docstring)."""

    vector: NDArray[np.floating[Any]]  # stored as read-only float32

    def __post_init__(self) -> None:
        raw = np.asarray(self.vector, dtype=np.float64)
        if raw.shape != (TEMPLATE_DIMS,):
            raise TemplateError(f"a face template has {TEMPLATE_DIMS} values, not {raw.shape}")
        if not np.all(np.isfinite(raw)) or np.max(np.abs(raw)) > _FLOAT16_MAX:
            raise TemplateError("a face template holds finite values within float16 range")
        quantised = raw.astype(np.float16).astype(np.float32)
        quantised.setflags(write=False)
        object.__setattr__(self, "vector", quantised)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaceTemplate) and bool(np.array_equal(self.vector, other.vector))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking array payload: unhashable

    def distance(self, other: FaceTemplate) -> float:
        """Euclidean distance, as face_recognition.face_distance computes it."""
        return float(np.linalg.norm(self.vector - other.vector))

    def to_text(self) -> str:
        """``FT1:`` + base64(float16 values + checksum): 352 ASCII characters."""
        payload = self.vector.astype("<f2").tobytes()
        return f"{TEMPLATE_VERSION}:" + base64.b64encode(payload + _checksum(payload)).decode()

    @classmethod
    def from_text(cls, text: str) -> FaceTemplate:
        """Strict inverse of :meth:`to_text`; any deviation is a :class:`TemplateError`."""
        if not isinstance(text, str):
            raise TemplateError(f"a face template is text, not {type(text).__name__}")
        version, sep, body = text.partition(":")
        if not sep:
            raise TemplateError("not a face template: no version prefix")
        if version != TEMPLATE_VERSION:
            raise TemplateError(f"unsupported face template version {version[:8]!r}")
        if len(body) != _BODY_CHARS:
            raise TemplateError(f"face template body has {len(body)} characters, not {_BODY_CHARS}")
        try:
            raw = base64.b64decode(body.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise TemplateError(f"face template is not valid base64: {exc}") from exc
        payload, check = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
        if _checksum(payload) != check:
            raise TemplateError("face template checksum mismatch: damaged or altered in transit")
        return cls(np.frombuffer(payload, dtype="<f2").astype(np.float32))


def _checksum(payload: bytes) -> bytes:
    digest = hashlib.blake2b(TEMPLATE_VERSION.encode() + payload, digest_size=_CHECKSUM_BYTES)
    return digest.digest()


@dataclasses.dataclass(frozen=True)
class Verification:
    """Outcome of one 1:1 check: faces in the probe, the decision, the distance behind it."""

    faces: int
    match: bool
    distance: float

    def as_dict(self) -> dict[str, Any]:
        return {"faces": self.faces, "match": self.match, "distance": round(self.distance, 4)}


@dataclasses.dataclass(frozen=True)
class LivenessResult:
    """``live`` if the face region changed in enough consecutive frame pairs."""

    live: bool
    frames: int
    pairs: int
    changed: int  # pairs whose mean grey-level change reached the threshold
    change: float  # median mean absolute change per pair, grey levels
    reason: str


class FaceVerifier:
    """Builds templates and verifies probes; see the module docstring for the choices."""

    def __init__(
        self,
        tolerance: float = 0.5,
        detect_scale: float = 0.5,
        upsample: int = 1,
        model: str = "hog",
        *,
        frame_size: tuple[int, int] = (1280, 720),
        jitters: int = 1,
    ) -> None:
        checks: dict[str, tuple[object, bool]] = {
            "tolerance": (tolerance, 0 < tolerance < 2),
            "detect_scale": (detect_scale, 0 < detect_scale <= 1),
            "upsample": (upsample, 0 <= upsample <= 3),
            "model": (model, model in ("hog", "cnn")),
            "frame_size": (frame_size, min(frame_size) > 0),
            "jitters": (jitters, jitters >= 1),
        }
        for key, (value, ok) in checks.items():
            if not ok:
                raise ConfigError("face", key, f"bad value {value!r}")
        self.tolerance, self.detect_scale, self.upsample = tolerance, detect_scale, upsample
        self.model, self.frame_size, self.jitters = model, frame_size, jitters

    def locate(self, image: ImageInput) -> list[Box]:
        """Face boxes in ``image``'s own pixel coordinates (top, right, bottom, left)."""
        return self._locate(_as_image(image))

    def template(self, image: ImageInput) -> FaceTemplate:
        """The template of the one face in ``image`` (NoFace / SeveralFaces otherwise)."""
        img = _as_image(image)
        return self._encode(img, self._one_face(img, "image"))

    def verify(self, probe_image: ImageInput, enrolled: FaceTemplate) -> Verification:
        """Is the one face in ``probe_image`` the enrolled person? Distance <= tolerance."""
        img = _as_image(probe_image)
        probe = self._encode(img, self._one_face(img, "probe image"))
        distance = probe.distance(enrolled)
        match = distance <= self.tolerance
        log.info(
            "face verification: distance %.3f, tolerance %.2f, match %s",
            distance,
            self.tolerance,
            match,
        )
        return Verification(faces=1, match=match, distance=distance)

    def liveness(
        self,
        frames: Sequence[Frame | Image],
        *,
        min_change: float = 2.0,
        min_frames: int = 3,
        min_changed: float = 0.5,
    ) -> LivenessResult:
        """Basic liveness: does the face region change between consecutive frames?

        The face is located once, in the first frame (NoFace / SeveralFaces otherwise);
        its box, widened by a quarter each side, is compared frame to frame in blurred
        grey (the blur keeps sensor and compression noise below ``min_change``, in grey
        levels). Live when at least ``min_changed`` of the pairs changed. See the module
        docstring for what this can and cannot catch.
        """
        cv2 = require_module("cv2")
        images = [_as_image(f) for f in frames]
        if len(images) < max(2, min_frames):
            return LivenessResult(False, len(images), 0, 0, 0.0, f"need {min_frames} frames")
        if len({img.shape for img in images}) != 1:
            raise ImageError("liveness frames differ in size")
        top, right, bottom, left = self._one_face(images[0], "first frame")
        h, w = images[0].shape[:2]
        mx, my = (right - left) // 4, (bottom - top) // 4
        y0, y1, x0, x1 = (
            max(0, top - my),
            min(h, bottom + my),
            max(0, left - mx),
            min(w, right + mx),
        )
        regions = [
            cv2.GaussianBlur(cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), (5, 5), 0)
            for img in images
        ]
        changes = [
            float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))
            for a, b in itertools.pairwise(regions)
        ]
        changed = sum(c >= min_change for c in changes)
        live = changed >= max(1, math.ceil(min_changed * len(changes)))
        median = float(np.median(changes))
        reason = (
            "face region changes across frames"
            if live
            else "face region static across frames: a still image (photo or frozen stream)"
        )
        log.info(
            "liveness: %s (%d of %d pairs changed, median %.2f)",
            live,
            changed,
            len(changes),
            median,
        )
        return LivenessResult(live, len(images), len(changes), changed, median, reason)

    # -- detection and encoding -----------------------------------------------------------

    def _locate(self, img: Image) -> list[Box]:
        cv2, fr = require_module("cv2"), require_module("face_recognition")
        h, w = img.shape[:2]
        scale = min(1.0, fit_scale(w, h, *self.frame_size)) * self.detect_scale
        dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
        small = (
            img if (dw, dh) == (w, h) else cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)
        )
        code = cv2.COLOR_BGR2GRAY if self.model == "hog" else cv2.COLOR_BGR2RGB
        found = fr.face_locations(
            cv2.cvtColor(small, code), number_of_times_to_upsample=self.upsample, model=self.model
        )
        sx, sy = w / dw, h / dh
        return [
            (
                max(0, round(t * sy)),
                min(w, round(r * sx)),
                min(h, round(b * sy)),
                max(0, round(lf * sx)),
            )
            for t, r, b, lf in found
        ]

    def _one_face(self, img: Image, what: str) -> Box:
        boxes = self._locate(img)
        if not boxes:
            raise NoFace(0, f"no face found in the {what}")
        if len(boxes) > 1:
            raise SeveralFaces(len(boxes), f"{len(boxes)} faces in the {what}; exactly one needed")
        return boxes[0]

    def _encode(self, img: Image, box: Box) -> FaceTemplate:
        cv2, fr = require_module("cv2"), require_module("face_recognition")
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        encodings = fr.face_encodings(rgb, known_face_locations=[box], num_jitters=self.jitters)
        return FaceTemplate(np.asarray(encodings[0], dtype=np.float32))
