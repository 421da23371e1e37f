"""Data the simulator ships: the demo bank's seed and the face photos (see faces/README.md)."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEMO_SEED = DATA_DIR / "demo-seed.toml"
FACES_DIR = DATA_DIR / "faces"
