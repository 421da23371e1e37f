"""The seed's cardless parts: settings, the fee table, enrolled faces (templates only)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from sim.host import db
from sim.host.ledger import Ledger
from sim.host.seed import load_seed
from sim.host.settings import CardlessSettings, FeeRule
from tests.cardless.helpers import face
from tests.host.helpers import DEMO_SEED

DEMO_TEXT = DEMO_SEED.read_text()
PHOTO_LINE = 'face_photo = "faces/obama.jpg"'


def load(where: Path, text: str) -> tuple[CardlessSettings, list[str]]:
    """Load ``text`` as a seed file in a new directory ``where``; (settings, persons
    with an enrolled face)."""
    where.mkdir(exist_ok=True)
    seed = where / "seed.toml"
    seed.write_text(text)
    conn = db.connect(where / "host.db")
    try:
        _, settings = load_seed(conn, seed, Ledger(conn, ManualClock()))
        enrolled = [r[0] for r in conn.execute("SELECT person_id FROM face_templates")]
        return settings.cardless, enrolled
    finally:
        conn.close()


def with_photo(path: Path | str) -> str:
    assert PHOTO_LINE in DEMO_TEXT
    return DEMO_TEXT.replace(PHOTO_LINE, f'face_photo = "{path}"')


def test_the_demo_seed_enrols_frank_from_a_photo_and_keeps_only_the_template(
    tmp_path: Path,
) -> None:
    conn = db.connect(tmp_path / "host.db")
    try:
        _, settings = load_seed(conn, DEMO_SEED, Ledger(conn, ManualClock()))
        row = conn.execute("SELECT * FROM face_templates").fetchone()
        assert row["person_id"] == "frank" and row["source"] == "obama.jpg"
        assert row["template"].startswith("FT1:") and len(row["template"]) == 352
    finally:
        conn.close()
    blob = (tmp_path / "host.db").read_bytes()
    assert face("obama.jpg").read_bytes()[:4096] not in blob  # never the photo
    assert settings.cardless.hold_minutes == 60 and settings.cardless.attempts == 3
    assert settings.cardless.fee_rule("debit") == FeeRule(flat=200)
    assert settings.cardless.fee_rule("credit") == FeeRule(flat=300, bps=100, maximum=1_000)


def test_fee_rules_are_integer_and_rounded_half_up() -> None:
    rule = FeeRule(flat=300, bps=100, maximum=1_000)
    assert rule.fee(20_000) == 500 and rule.fee(20_050) == 501  # 200.5 -> 201
    assert rule.fee(200_000) == 1_000  # capped
    assert FeeRule(bps=25, minimum=150).fee(10_000) == 150  # 25 -> at least 150
    assert CardlessSettings().fee_rule("anything") == FeeRule()  # no table: free
    table = CardlessSettings(fees=(("debit", FeeRule(flat=1)),))
    assert table.fee_rule("credit") is None  # a table without the product: no rule


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("debit = 200\n", "", "cardless.fees"),  # the demo cards' product unpriced
        ("debit = 200\n", "debit = -1\n", "cardless.fees.debit"),
        ("debit = 200\n", "debit = { flat = 1, pct = 2 }\n", "cardless.fees.debit.pct"),
        ("debit = 200\n", 'debit = "2.00"\n', "cardless.fees.debit"),
        ("hold_minutes = 60", "hold_minutes = 0", "cardless.hold_minutes"),
        ("min_amount = 2_000", "min_amount = 90_000", "cardless.min_amount"),
        ("face_tolerance = 0.5", "face_tolerance = 3", "cardless.face_tolerance"),
    ],
)
def test_bad_cardless_settings_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in DEMO_TEXT
    with pytest.raises(ConfigError) as info:
        load(tmp_path, DEMO_TEXT.replace(old, new, 1))
    assert info.value.key == key, info.value


def test_face_photos(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Absolute path: enrolled.
    _, enrolled = load(tmp_path / "a", with_photo(face("obama.jpg")))
    assert enrolled == ["frank"]

    # Missing: a warning, not enrolled, the rest of the seed loads.
    with caplog.at_level(logging.WARNING):
        settings, enrolled = load(tmp_path / "b", with_photo("nowhere/frank.jpg"))
    assert settings.attempts == 3  # the rest of the seed loaded
    assert enrolled == [] and "frank is not enrolled" in caplog.text

    # An image without a face, or not an image: the seed is wrong.
    (tmp_path / "c").mkdir()
    blank = tmp_path / "c" / "blank.jpg"
    assert cv2.imwrite(str(blank), np.full((480, 640, 3), 128, dtype=np.uint8))
    with pytest.raises(ConfigError, match="no face") as info:
        load(tmp_path / "c", with_photo(blank.name))  # relative to the seed file
    assert info.value.key == "persons[5].face_photo"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="not a readable image"):
        load(tmp_path / "d", with_photo("junk.jpg"))

    # A template instead of a photo; a damaged one is refused.
    (tmp_path / "e").mkdir()
    conn = db.connect(tmp_path / "e" / "ref.db")
    try:
        load_seed(conn, DEMO_SEED, Ledger(conn, ManualClock()))
        text = conn.execute("SELECT template FROM face_templates").fetchone()[0]
    finally:
        conn.close()
    _, enrolled = load(tmp_path / "e", DEMO_TEXT.replace(PHOTO_LINE, f'face_template = "{text}"'))
    assert enrolled == ["frank"]
    with pytest.raises(ConfigError, match="checksum"):
        load(
            tmp_path / "f", DEMO_TEXT.replace(PHOTO_LINE, f'face_template = "{text[:-8]}AAAAAAAA"')
        )
