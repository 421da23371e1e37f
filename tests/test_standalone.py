"""The repository stands alone: nothing tracked reads or names a folder beside it or a
path of the machine it was built on, and the data the tests and the demo need is inside.

A clone with nothing next to it must pass ``make test`` and ``make demo``; this test keeps
it that way by failing on the first tracked file that names such a path.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sim.data import DEMO_SEED, FACES_DIR

ROOT = Path(__file__).resolve().parents[1]
# Built from parts, so this file does not match itself.
SIBLING = re.escape("..") + "/" + "shared"
FORBIDDEN = re.compile(
    "|".join(
        [
            SIBLING,  # the team's folder beside the clone
            r"(?<![\w.])/" + "work/",  # the build machine's work tree
            r"(?<![\w.])/" + r"root/",
            r"(?<![\w.])/" + r"home/\w",
            "shared/" + "(?:data|bench|seeds)",
        ]
    )
)


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # photos and other binaries
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_must() -> None:
    for bad in ("../" + "shared" + "/data/faces/obama.jpg", "/" + "work/main/x", "/" + "root/.x"):
        assert FORBIDDEN.search(bad), bad
    for fine in ("sim/data/faces/obama.jpg", "/tmp/h.db", "/run/pcscd", "/usr/bin/chromium"):
        assert not FORBIDDEN.search(fine), fine


def test_the_data_the_tests_and_demo_need_is_inside() -> None:
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg"):
        assert (FACES_DIR / name).stat().st_size > 10_000, name
    readme = (FACES_DIR / "README.md").read_text()
    assert "MIT" in readme and "public domain" in readme  # source and licence named
    seed = DEMO_SEED.read_text()
    photos = re.findall(r'face_photo = "([^"]+)"', seed)
    assert photos and all((DEMO_SEED.parent / p).is_file() for p in photos)
