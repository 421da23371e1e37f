"""1:1 face verification on real photos: genuine pairs, an impostor, face counts, templates.

Photos come from ``sim/data/faces`` (see its README). Encodings cost about
100 ms each here, so templates are made once per module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atm_common.errors import AtmError, ConfigError
from atm_common.face.verify import (
    FIELD_63_MAX,
    TEMPLATE_TEXT_CHARS,
    FaceTemplate,
    FaceVerifier,
    ImageError,
    NoFace,
    SeveralFaces,
    TemplateError,
    letterbox,
    load_image,
)
from sim.data import FACES_DIR as FACES

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg")
GENUINE = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama2.jpg", "obama3.jpg")]


def photo(name: str) -> Path:
    path = FACES / name
    if not path.is_file():
        pytest.fail(f"test photo {path} is missing: see sim/data/faces")
    return path


@pytest.fixture(scope="module")
def verifier() -> FaceVerifier:
    return FaceVerifier()


@pytest.fixture(scope="module")
def templates(verifier: FaceVerifier) -> dict[str, FaceTemplate]:
    return {name: verifier.template(photo(name)) for name in PHOTOS}


@pytest.mark.parametrize(("a", "b"), GENUINE)
def test_genuine_pairs_match(templates: dict[str, FaceTemplate], a: str, b: str) -> None:
    distance = templates[a].distance(templates[b])
    assert 0.1 < distance < 0.5, distance  # the verifier's tolerance is 0.5


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "obama3.jpg"])
def test_impostor_is_rejected(templates: dict[str, FaceTemplate], name: str) -> None:
    assert templates["biden.jpg"].distance(templates[name]) > 0.7


def test_partly_hidden_face_still_matches(templates: dict[str, FaceTemplate]) -> None:
    assert templates["obama_partial_face.jpg"].distance(templates["obama.jpg"]) < 0.5


def test_verify_a_720p_frame_reports_faces_match_and_distance(
    verifier: FaceVerifier, templates: dict[str, FaceTemplate]
) -> None:
    frame = letterbox(photo("obama.jpg"))
    genuine = verifier.verify(frame, templates["obama2.jpg"])
    assert genuine.faces == 1 and genuine.match
    assert genuine.distance == pytest.approx(
        templates["obama.jpg"].distance(templates["obama2.jpg"]), abs=0.08
    )
    impostor = verifier.verify(frame, templates["biden.jpg"])
    assert impostor.faces == 1 and not impostor.match and impostor.distance > 0.7
    assert impostor.as_dict() == {
        "faces": 1,
        "match": False,
        "distance": round(impostor.distance, 4),
    }


def test_tolerance_decides(templates: dict[str, FaceTemplate]) -> None:
    strict = FaceVerifier(tolerance=0.2)
    frame = letterbox(photo("obama.jpg"))
    result = strict.verify(frame, templates["obama2.jpg"])
    assert result.distance > 0.2 and not result.match


def test_blank_image_has_no_face(verifier: FaceVerifier) -> None:
    blank = np.zeros((720, 1280, 3), dtype=np.uint8)
    with pytest.raises(NoFace, match="no face") as info:
        verifier.template(blank)
    assert info.value.faces == 0
    assert isinstance(info.value, AtmError)


def test_two_faces_side_by_side_are_several(
    verifier: FaceVerifier, templates: dict[str, FaceTemplate]
) -> None:
    pair = np.hstack(
        [letterbox(photo("obama.jpg"), 640, 720), letterbox(photo("biden.jpg"), 640, 720)]
    )
    assert len(verifier.locate(pair)) == 2
    with pytest.raises(SeveralFaces, match="2 faces") as info:
        verifier.verify(pair, templates["obama.jpg"])
    assert info.value.faces == 2


def test_corrupt_image_file_is_a_clear_error(tmp_path: Path, verifier: FaceVerifier) -> None:
    bad = tmp_path / "probe.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(ImageError, match=r"probe\.jpg.*not a readable image"):
        verifier.template(bad)
    with pytest.raises(ImageError, match=r"missing\.jpg"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize(
    "array",
    [np.zeros((10, 10, 3), np.float32), np.zeros((0, 0, 3), np.uint8), np.array(["text"])],
)
def test_non_images_are_refused(verifier: FaceVerifier, array: Any) -> None:
    with pytest.raises(ImageError):
        verifier.template(array)


def test_letterbox_keeps_the_aspect_ratio() -> None:
    source = load_image(photo("obama.jpg"))  # portrait, 910x1137
    frame = letterbox(source)
    assert frame.shape == (720, 1280, 3)
    columns = np.flatnonzero(frame.any(axis=(0, 2)))
    rows = np.flatnonzero(frame.any(axis=(1, 2)))
    width, height = columns[-1] - columns[0] + 1, rows[-1] - rows[0] + 1
    assert height == 720
    assert width / height == pytest.approx(source.shape[1] / source.shape[0], abs=0.01)
    assert not frame[:, : columns[0]].any() and not frame[:, columns[-1] + 1 :].any()


def test_letterbox_scales_small_landscape_images_up_with_bars() -> None:
    small = np.full((50, 200, 3), 200, dtype=np.uint8)  # 4:1
    frame = letterbox(small, 1280, 720)
    rows = np.flatnonzero(frame.any(axis=(1, 2)))
    assert rows[-1] - rows[0] + 1 == 320  # 1280 / 4
    assert frame[:, :, 0].any(axis=0).all()  # full width, no side bars


def test_template_text_round_trip_fits_field_63(templates: dict[str, FaceTemplate]) -> None:
    template = templates["obama.jpg"]
    text = template.to_text()
    assert len(text) == TEMPLATE_TEXT_CHARS == 352 and len(text) <= FIELD_63_MAX
    assert text.startswith("FT1:") and text.isascii()
    back = FaceTemplate.from_text(text)
    assert back == template
    assert back.distance(templates["obama2.jpg"]) == template.distance(templates["obama2.jpg"])


def test_quantisation_hardly_moves_distances(verifier: FaceVerifier) -> None:
    exact = np.linspace(-0.3, 0.3, 128)
    assert FaceTemplate(exact).distance(FaceTemplate(exact * 0)) == pytest.approx(
        float(np.linalg.norm(exact)), abs=1e-3
    )


def _tamper(text: str, index: int) -> str:
    swap = "A" if text[index] != "A" else "B"
    return text[:index] + swap + text[index + 1 :]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: _tamper(t, 100), "checksum"),
        (lambda t: _tamper(t, 5), "checksum"),
        (lambda t: "FT9" + t[3:], "version"),
        (lambda t: t[4:], "version prefix"),
        (lambda t: t[:-4], "characters"),
        (lambda t: t[:-1] + "!", "base64"),
        (lambda t: t[:10] + "é" + t[11:], "base64"),
    ],
)
def test_tampered_or_malformed_text_is_refused(
    templates: dict[str, FaceTemplate], change: Any, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        FaceTemplate.from_text(change(templates["obama.jpg"].to_text()))


@pytest.mark.parametrize("vector", [np.zeros(127), np.full(128, np.nan), np.full(128, 1e6)])
def test_bad_vectors_are_refused(vector: Any) -> None:
    with pytest.raises(TemplateError):
        FaceTemplate(vector)


def test_not_text_is_refused() -> None:
    with pytest.raises(TemplateError):
        FaceTemplate.from_text(b"FT1:AAAA")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"tolerance": 0}, {"detect_scale": 0}, {"detect_scale": 2}, {"upsample": -1}, {"model": "x"}],
)
def test_bad_verifier_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        FaceVerifier(**options)


def test_missing_face_recognition_names_the_packages() -> None:
    code = (
        "import sys, numpy as np; sys.modules['face_recognition'] = None\n"
        "from atm_common.face.verify import FaceVerifier, FaceEngineUnavailable\n"
        "try:\n    FaceVerifier().template(np.zeros((8, 8, 3), np.uint8))\n"
        "except FaceEngineUnavailable as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "dlib-bin" in out.stdout and "face-recognition-models" in out.stdout


# -- atm diag camera --verify ------------------------------------------------------------


def test_diag_verify_images_answers_faces_match_distance() -> None:
    from terminal.diag.camera import verify_images

    genuine = verify_images(photo("obama.jpg"), photo("obama2.jpg"))
    assert set(genuine) == {"faces", "match", "distance"}
    assert genuine["faces"] == 1 and genuine["match"] is True
    assert 0.1 < genuine["distance"] < 0.5
    impostor = verify_images(photo("obama.jpg"), photo("biden.jpg"))
    assert impostor["match"] is False and impostor["distance"] > 0.7


def test_diag_verify_reports_a_probe_without_one_face(tmp_path: Path) -> None:
    import cv2

    from terminal.diag.camera import verify_images

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((360, 640, 3), np.uint8))
    result = verify_images(photo("obama.jpg"), blank)
    assert result["faces"] == 0 and result["match"] is False and result["distance"] is None
    assert "no face" in result["error"]
    with pytest.raises(NoFace, match=r"enrolled image .*blank\.png"):
        verify_images(blank, photo("obama.jpg"))
