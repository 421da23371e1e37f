"""The carrier location service over real HTTP: made-up and table-driven answers, only
for lookups the bank's host signed."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from sim.carrier import CarrierService, CellLocation, default_location, load_table, serve
from sim.service_auth import load_host_key, new_host_key_file, sign_request

from .signed import KEY, call

TABLE_TOML = """
[terminals.MOBPOS01]
lat = 26.6
lon = 106.7
accuracy_m = 250
cell_id = "001-01-1-2"

[terminals.MOBPOS02]
lat = -33.9
lon = 18.4
"""


def get(url: str, **kw: Any) -> tuple[int, Any]:
    return call(url, token=None, **kw)


def carrier(table: dict[str, CellLocation] | None = None) -> CarrierService:
    return CarrierService(table, host_key=KEY)


def test_made_up_locations_are_stable_per_terminal() -> None:
    with carrier() as first:
        status, answer = get(first.url + "/locate?terminal_id=POS00042")
    with carrier() as second:
        assert get(second.url + "/locate?terminal_id=POS00042") == (status, answer)
        other = get(second.url + "/locate?terminal_id=POS00043")[1]
    assert status == 200
    assert set(answer) == {"terminal_id", "lat", "lon", "accuracy_m", "source", "cell_id"}
    assert answer["source"] == "carrier" and answer["terminal_id"] == "POS00042"
    assert answer == default_location("POS00042").as_dict()
    assert (other["lat"], other["lon"]) != (answer["lat"], answer["lon"])
    assert -90 <= answer["lat"] <= 90 and 100 <= answer["accuracy_m"] <= 2000


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_table_knows_its_terminals_only(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cells{suffix}"
    if suffix == ".json":
        path.write_text(
            json.dumps(
                {
                    "terminals": {
                        "MOBPOS01": {
                            "lat": 26.6,
                            "lon": 106.7,
                            "accuracy_m": 250,
                            "cell_id": "001-01-1-2",
                        }
                    }
                }
            )
        )
    else:
        path.write_text(TABLE_TOML)
    with carrier(load_table(path)) as service:
        assert get(service.url + "/locate?terminal_id=MOBPOS01") == (
            200,
            {
                "terminal_id": "MOBPOS01",
                "lat": 26.6,
                "lon": 106.7,
                "accuracy_m": 250.0,
                "source": "carrier",
                "cell_id": "001-01-1-2",
            },
        )
        status, answer = get(service.url + "/locate?terminal_id=ATM99999")
        assert status == 404 and "ATM99999" in answer["error"]


@pytest.mark.parametrize(
    "query", ["", "?terminal_id=", "?terminal_id=a%20b", "?terminal_id=A&terminal_id=B"]
)
def test_a_bad_terminal_id_is_400(query: str) -> None:
    with carrier() as service:
        status, answer = get(service.url + "/locate" + query)
    assert status == 400 and answer["field"] == "terminal_id"


def test_unknown_path_is_404_and_health_is_ok() -> None:
    with carrier() as service:
        assert get(service.url + "/where")[0] == 404
        assert get(service.url + "/health", key=None) == (200, {"status": "ok"})
        assert get(service.url + "/openapi.json", key=None)[0] == 200


def test_only_the_hosts_signed_lookups_are_answered() -> None:
    url_path = "/locate?terminal_id=POS00042"
    with carrier() as service:
        url = service.url + url_path
        assert get(url, key=None)[0] == 401  # where a device is, is not for anyone
        assert get(url, key=bytes(32))[0] == 401  # another key
        # signed for another terminal: the query is part of what is signed
        other = sign_request(KEY, "GET", "/locate?terminal_id=POS00043")
        assert get(url, key=None, headers=other)[0] == 401
        # signed an hour ago: stale
        old = ManualClock()  # 2026-01-01, far from now
        assert get(url, key=None, headers=sign_request(KEY, "GET", url_path, clock=old))[0] == 401
        # a captured lookup played again
        once = sign_request(KEY, "GET", url_path)
        assert get(url, key=None, headers=once)[0] == 200
        assert get(url, key=None, headers=once)[0] == 401
        assert get(url)[0] == 200


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[terminals.A1]\nlon = 1.0\n", "terminals.A1.lat"),
        ("[terminals.A1]\nlat = 'north'\nlon = 1.0\n", "terminals.A1"),
        ("[terminals.A1]\nlat = 95.0\nlon = 1.0\n", "terminals.A1"),
        ("title = 'no terminals'\n", "terminals"),
        ("[terminals\n", ""),
    ],
)
def test_a_bad_table_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "cells.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_table(path)
    assert info.value.key == key and info.value.source == str(path)


def test_serve_with_a_table(tmp_path: Path) -> None:
    path = tmp_path / "cells.toml"
    path.write_text(TABLE_TOML)
    ready: list[tuple[str, int]] = []
    stop = threading.Event()
    key_file = new_host_key_file(tmp_path / "host.key")
    thread = threading.Thread(
        target=serve,
        args=(path, "127.0.0.1", 0, lambda h, p: ready.append((h, p)), stop),
        kwargs={"host_key_file": key_file},
    )
    thread.start()
    try:
        for _ in range(500):
            if ready:
                break
            threading.Event().wait(0.01)
        [(host, port)] = ready
        url = f"http://{host}:{port}/locate?terminal_id=MOBPOS02"
        status, answer = get(url, key=load_host_key(key_file))
        assert status == 200 and answer["accuracy_m"] == default_location("MOBPOS02").accuracy_m
        assert answer["cell_id"] == default_location("MOBPOS02").cell_id
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
