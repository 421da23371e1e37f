"""Private field 62: where the terminal is, with its source and age.

The host needs the location to raise an alarm that sends help to the right place, so each
request carries it in field 62. A terminal that has no location (a mobile POS without a
fix) says so, and the host asks the carrier instead.
Layout (ASCII, ``;``-separated ``key=value``):
``SRC=gps|site|none;LAT=52.520000;LON=13.405000;AGE=3;Q=1;SAT=8;HDOP=0.9``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from host_link.errors import CodecError


@dataclasses.dataclass(frozen=True)
class Location:
    source: str  # gps, site, carrier, none
    lat: float | None = None
    lon: float | None = None
    age: float | None = None  # seconds since the fix, for GPS
    quality: int | None = None
    satellites: int | None = None
    hdop: float | None = None

    def field62(self) -> str:
        parts = [f"SRC={self.source}"]
        if self.lat is not None and self.lon is not None:
            parts += [f"LAT={self.lat:.6f}", f"LON={self.lon:.6f}"]
        if self.age is not None:
            parts.append(f"AGE={round(self.age)}")
        for key, value in (("Q", self.quality), ("SAT", self.satellites), ("HDOP", self.hdop)):
            if value is not None:
                parts.append(f"{key}={value}")
        return ";".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def parse_field62(text: str) -> Location:
    """The host's reading of field 62; malformed content raises CodecError."""
    try:
        items: Mapping[str, str] = dict(part.split("=", 1) for part in text.split(";") if part)
        return Location(
            source=items.get("SRC", "none"),
            lat=float(items["LAT"]) if "LAT" in items else None,
            lon=float(items["LON"]) if "LON" in items else None,
            age=float(items["AGE"]) if "AGE" in items else None,
            quality=int(items["Q"]) if "Q" in items else None,
            satellites=int(items["SAT"]) if "SAT" in items else None,
            hdop=float(items["HDOP"]) if "HDOP" in items else None,
        )
    except ValueError as exc:
        raise CodecError(f"field 62 is malformed: {exc}", field="62") from None
