"""Baseline: face_recognition's default pipeline on one 1280x720 camera frame.

Measures: the raw libraries (face_recognition 1.3.0 on dlib, no project code) finding and
encoding the face in a 1280x720 RGB frame built from a real photo (``--photo``, by default
obama.jpg from the repository's ``sim/data/faces``): the photo is scaled to fit the frame
with its aspect ratio kept and centred on black bars, as a kiosk camera frame would hold a
customer. Variants, each timed as detection followed by encoding of every face found:

  up1       ``face_locations(frame, number_of_times_to_upsample=1, model="hog")``, then
            ``face_encodings(frame, those boxes)``: the library's defaults
  up0       the same with ``number_of_times_to_upsample=0`` (cheaper, misses small faces)
  half_up1  detection on a half-size copy of the frame (``--half-upsample``, default 1),
            boxes doubled back, encoding on the full frame: the closest plain-library
            equivalent of the project's verifier (which also detects on a reduced copy)

Each variant gets one untimed warm-up run, then ``--runs`` timed runs; reported are the
median total, detection and encoding milliseconds and the number of faces found. As a
sanity check the largest face of obama.jpg is compared with obama2.jpg (same person,
expect a distance below 0.6) and biden.jpg (someone else, expect above 0.6).

Why: face verification is the heaviest step of a cardless withdrawal; the project's face
benchmark divides its time per frame by these medians, measured in the same run.

Needs face_recognition (installed ``--no-deps``), dlib-bin, face-recognition-models,
setuptools<82, numpy, Pillow and opencv-python-headless: the project's ``face`` extra.
Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import face_recognition
import numpy as np
from PIL import Image

FRAME_W, FRAME_H = 1280, 720
MATCH_THRESHOLD = 0.6  # face_recognition's customary tolerance
# The repository's own photos: bench/baselines/face.py -> <repo>/sim/data/faces
DEFAULT_FACES = Path(__file__).resolve().parents[2] / "sim" / "data" / "faces"

Box = tuple[int, int, int, int]  # (top, right, bottom, left), face_recognition's order


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise SystemExit(f"photo {path} not found (use --faces)")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def letterboxed_frame(path: Path) -> np.ndarray:
    """The photo fitted into FRAME_W x FRAME_H without stretching, on a black canvas."""
    photo = load_rgb(path)
    height, width = photo.shape[:2]
    scale = min(FRAME_W / width, FRAME_H / height)
    fit_w = min(FRAME_W, max(1, round(width * scale)))
    fit_h = min(FRAME_H, max(1, round(height * scale)))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    fitted = cv2.resize(photo, (fit_w, fit_h), interpolation=method)
    canvas = np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8)
    left, top = (FRAME_W - fit_w) // 2, (FRAME_H - fit_h) // 2
    canvas[top : top + fit_h, left : left + fit_w] = fitted
    return canvas


def detect(frame: np.ndarray, upsample: int, shrink: int) -> list[Box]:
    """HOG face boxes in full-frame coordinates, detecting on a 1/``shrink`` copy."""
    if shrink == 1:
        return list(
            face_recognition.face_locations(
                frame, number_of_times_to_upsample=upsample, model="hog"
            )
        )
    small = cv2.resize(
        frame,
        (frame.shape[1] // shrink, frame.shape[0] // shrink),
        interpolation=cv2.INTER_AREA,
    )
    found = face_recognition.face_locations(
        small, number_of_times_to_upsample=upsample, model="hog"
    )
    return [(t * shrink, r * shrink, b * shrink, lft * shrink) for t, r, b, lft in found]


def one_run(frame: np.ndarray, upsample: int, shrink: int) -> tuple[float, float, int]:
    """(detect ms, encode ms, faces encoded) for one pass of the pipeline."""
    t0 = time.perf_counter()
    boxes = detect(frame, upsample, shrink)
    t1 = time.perf_counter()
    encodings = face_recognition.face_encodings(frame, known_face_locations=boxes)
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, len(encodings)


def time_variant(frame: np.ndarray, upsample: int, shrink: int, runs: int) -> dict[str, Any]:
    one_run(frame, upsample, shrink)  # warm-up: first-call allocations, caches
    detect_ms, encode_ms, totals, faces = [], [], [], set()
    for _ in range(runs):
        d, e, n = one_run(frame, upsample, shrink)
        detect_ms.append(d)
        encode_ms.append(e)
        totals.append(d + e)
        faces.add(n)
    return {
        "ms": round(statistics.median(totals), 1),
        "min_ms": round(min(totals), 1),
        "detect_ms": round(statistics.median(detect_ms), 1),
        "encode_ms": round(statistics.median(encode_ms), 1),
        "upsample": upsample,
        "detect_scale": 1 / shrink,
        "faces": faces.pop() if len(faces) == 1 else sorted(faces),
    }


def largest_face_encoding(path: Path) -> np.ndarray:
    image = load_rgb(path)
    boxes = face_recognition.face_locations(image)
    if not boxes:
        raise SystemExit(f"no face found in {path}")
    biggest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    return face_recognition.face_encodings(image, known_face_locations=[biggest])[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="face_recognition HOG detect + encode on a 1280x720 frame (baseline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="folder of photos")
    parser.add_argument("--photo", default="obama.jpg", help="photo letterboxed into the frame")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant (1..50)")
    parser.add_argument("--half-upsample", type=int, default=1, help="upsample for half_up1 (0..2)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50 or not 0 <= args.half_upsample <= 2:
        parser.error("--runs must be 1..50 and --half-upsample 0..2")

    frame = letterboxed_frame(args.faces / args.photo)
    progress(f"face: {args.photo} letterboxed to {FRAME_W}x{FRAME_H}, {args.runs} runs each")
    plan = {"up1": (1, 1), "up0": (0, 1), "half_up1": (args.half_upsample, 2)}
    results: dict[str, dict[str, Any]] = {}
    for name, (upsample, shrink) in plan.items():
        results[name] = r = time_variant(frame, upsample, shrink, args.runs)
        progress(
            f"face: {name}: {r['ms']} ms (detect {r['detect_ms']} + encode {r['encode_ms']}), "
            f"faces {r['faces']}"
        )

    reference = largest_face_encoding(args.faces / "obama.jpg")
    same, other = face_recognition.face_distance(
        [
            largest_face_encoding(args.faces / "obama2.jpg"),
            largest_face_encoding(args.faces / "biden.jpg"),
        ],
        reference,
    )
    sane = bool(same < MATCH_THRESHOLD < other)
    progress(f"face: distance obama/obama2 {same:.3f}, obama/biden {other:.3f}, sane={sane}")
    print(
        json.dumps(
            {
                "name": "baseline_face_recognition_720p",
                "frame": f"{FRAME_W}x{FRAME_H}",
                "photo": args.photo,
                "runs": args.runs,
                "results": results,
                "distance_obama_obama2": round(float(same), 3),
                "distance_obama_biden": round(float(other), 3),
                "threshold": MATCH_THRESHOLD,
                "sanity_ok": sane,
            }
        )
    )


if __name__ == "__main__":
    main()
