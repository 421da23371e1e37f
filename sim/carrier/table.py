"""The carrier's knowledge: where each terminal's SIM is attached.

With a table (TOML or JSON, ``[terminals.ID] lat lon [accuracy_m] [cell_id]``) the carrier
knows exactly those terminals, like an operator that has never seen other SIMs. Without
one it makes up a location per terminal id that is deterministic (a hash of the id), so
tests and demos replay. Kept apart from the HTTP service (:mod:`sim.carrier.server`) so a
table can be loaded and checked, and its errors named, before anything listens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from atm_common.errors import ConfigError

DEFAULT_CENTER = (26.5783, 106.7135)  # made-up locations scatter ~20 km around this
TERMINAL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclasses.dataclass(frozen=True)
class CellLocation:
    terminal_id: str
    lat: float
    lon: float
    accuracy_m: float
    cell_id: str

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "source": "carrier"}


def default_location(terminal_id: str) -> CellLocation:
    """A stable made-up location: the same id always lands in the same cell."""
    h = hashlib.sha256(terminal_id.encode()).digest()
    u = [int.from_bytes(h[i : i + 4], "big") / 2**32 for i in (0, 4, 8)]
    lac, ci = int.from_bytes(h[12:14], "big"), int.from_bytes(h[14:17], "big")
    return CellLocation(
        terminal_id,
        round(DEFAULT_CENTER[0] + (u[0] - 0.5) * 0.4, 6),
        round(DEFAULT_CENTER[1] + (u[1] - 0.5) * 0.4, 6),
        float(round(100 + u[2] * 1900)),
        f"001-01-{lac}-{ci}",
    )


def load_table(path: str | Path) -> dict[str, CellLocation]:
    """Read a TOML or JSON table; a bad entry raises ConfigError naming file and key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            source, "", f"not valid {'JSON' if source.endswith('.json') else 'TOML'}: {exc}"
        ) from None
    terminals = data.get("terminals") if isinstance(data, dict) else None
    if not isinstance(terminals, dict):
        raise ConfigError(source, "terminals", "a table of terminal id -> location is required")
    table = {}
    for tid, entry in terminals.items():
        key = f"terminals.{tid}"
        if not TERMINAL_ID.fullmatch(tid) or not isinstance(entry, dict):
            raise ConfigError(source, key, "needs a plain id and a table of lat, lon")
        made_up = default_location(tid)
        try:
            lat, lon = float(entry["lat"]), float(entry["lon"])
            accuracy = float(entry.get("accuracy_m", made_up.accuracy_m))
        except KeyError as exc:
            raise ConfigError(source, f"{key}.{exc.args[0]}", "is required") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                source, key, f"lat, lon and accuracy_m must be numbers: {exc}"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and accuracy >= 0):
            raise ConfigError(source, key, "lat/lon out of range or negative accuracy_m")
        table[tid] = CellLocation(
            tid, lat, lon, accuracy, str(entry.get("cell_id", made_up.cell_id))
        )
    return table
