"""Benchmark: face verification time per 1280x720 camera frame, ours vs the raw library.

What is measured: :meth:`atm_common.face.verify.FaceVerifier.verify` (default settings:
HOG on a grey copy scaled by ``detect_scale`` 0.5 with upsample 1, boxes mapped back,
128-d encoding on the full frame, distance to the enrolled template) on a 1280x720 BGR
frame letterboxed from ``--photo`` (obama.jpg) against a template enrolled from
``--enrolled`` (obama2.jpg, through its field-63 text form). Median of ``--runs`` after one
warm-up; detection alone (``locate``) is timed the same way, encoding is the rest. Also
timed: basic liveness over ``--liveness-frames`` frames of a generated moving-face video
read through :class:`OpenCvCamera`.

Baseline, in the same run: ``bench/baselines/face.py`` (face_recognition's own
pipeline on the same letterboxed frame: ``up1`` default, ``up0``, and ``half_up1`` which
is the closest to ours but detects in colour). Ratios are ours / baseline: below 1 is
faster. Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import DEFAULT_BASELINE_DIR, progress, run_baseline

from atm_common.clock import ManualClock
from atm_common.face.verify import FaceTemplate, FaceVerifier, letterbox
from sim.devices.camera_video import make_camera_video
from terminal.drivers.camera.opencv import OpenCvCamera

DEFAULT_FACES = Path(__file__).resolve().parents[1] / "sim" / "data" / "faces"


def median_ms(action: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    """One warm-up call, then ``runs`` timed calls: median and all samples, in ms."""
    action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), samples


def measure_ours(args: argparse.Namespace) -> dict[str, Any]:
    faces = Path(args.faces)
    verifier = FaceVerifier(detect_scale=args.detect_scale, upsample=args.upsample)
    frame = letterbox(faces / args.photo, 1280, 720)
    enrolled_text = verifier.template(faces / args.enrolled).to_text()
    enrolled = FaceTemplate.from_text(enrolled_text)
    result = verifier.verify(frame, enrolled)
    progress(f"ours: {args.photo} vs {args.enrolled}: {result}")
    total, samples = median_ms(lambda: verifier.verify(frame, enrolled), args.runs)
    detect, _ = median_ms(lambda: verifier.locate(frame), args.runs)
    faces_found = len(verifier.locate(frame))
    progress(f"ours: verify {total:.1f} ms (detect {detect:.1f} ms), {faces_found} face(s)")

    with tempfile.TemporaryDirectory() as folder:
        video = make_camera_video(
            Path(folder) / "live.avi", [faces / args.photo], frames_per_photo=args.liveness_frames
        )
        clock = ManualClock()
        with OpenCvCamera(video.path, clock=clock) as camera:
            start = time.perf_counter()
            frames = [camera.capture() for _ in range(args.liveness_frames)]
            capture_ms = (time.perf_counter() - start) * 1000 / len(frames)
        liveness_ms, _ = median_ms(lambda: verifier.liveness(frames), max(1, args.runs // 2))
        live = verifier.liveness(frames).live
    progress(f"ours: liveness over {len(frames)} frames {liveness_ms:.1f} ms, live={live}")
    return {
        "verify_ms": round(total, 1),
        "verify_min_ms": round(min(samples), 1),
        "detect_ms": round(detect, 1),
        "encode_ms": round(total - detect, 1),
        "faces": faces_found,
        "distance": round(result.distance, 3),
        "match": result.match,
        "template_chars": len(enrolled_text),
        "liveness_ms": round(liveness_ms, 1),
        "liveness_frames": len(frames),
        "live": live,
        "capture_ms_per_frame": round(capture_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="folder with the photos")
    parser.add_argument("--photo", default="obama.jpg", help="photo letterboxed into the probe")
    parser.add_argument("--enrolled", default="obama2.jpg", help="photo of the enrolled template")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (1..50)")
    parser.add_argument("--detect-scale", type=float, default=0.5)
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--liveness-frames", type=int, default=8, help="frames (3..60)")
    parser.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR)
    args = parser.parse_args()
    if not 1 <= args.runs <= 50 or not 3 <= args.liveness_frames <= 60:
        parser.error("--runs must be 1..50 and --liveness-frames 3..60")

    ours = measure_ours(args)
    baseline = run_baseline(
        args.baseline_dir,
        "face.py",
        "--runs",
        str(args.runs),
        "--faces",
        args.faces,
        "--photo",
        args.photo,
        timeout=600,
    )
    ratios = {
        name: round(ours["verify_ms"] / variant["ms"], 2)
        for name, variant in baseline["results"].items()
    }
    for name, variant in baseline["results"].items():
        print(
            f"verify per 720p frame: {ours['verify_ms']:.1f} ms = {ratios[name]:.2f}x "
            f"baseline {name} ({variant['ms']:.1f} ms)"
        )
    print(
        f"distance {args.photo}/{args.enrolled}: ours {ours['distance']}, "
        f"baseline obama/obama2 {baseline['distance_obama_obama2']}; "
        f"template {ours['template_chars']} chars; liveness {ours['liveness_ms']} ms"
    )
    print(
        json.dumps(
            {
                "name": "bench_face_verify_720p",
                "frame": "1280x720",
                "runs": args.runs,
                "settings": {"detect_scale": args.detect_scale, "upsample": args.upsample},
                "ours": ours,
                "baseline": baseline,
                "ratio_vs_baseline": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
