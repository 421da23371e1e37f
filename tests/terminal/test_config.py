from __future__ import annotations

from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError
from terminal.config import load_config, parse_config
from terminal.devices import build_devices

SIM_CONFIG = Path(__file__).resolve().parents[2] / "terminal" / "data" / "sim-terminal.toml"


def test_shipped_sim_config_loads_and_builds_devices() -> None:
    config = load_config(SIM_CONFIG)
    assert config.terminal_id == "ATM00001"
    assert config.host.port == 8583
    assert config.journal.is_absolute()
    devices = build_devices(config, ManualClock())
    with devices.dispenser:
        assert [c.denomination for c in devices.dispenser.cassettes()] == [2000, 5000]


def test_defaults_fill_devices() -> None:
    config = parse_config({"terminal": {"id": "ATM00009"}}, "t.toml")
    assert set(config.devices) >= {"card_reader", "pinpad", "dispenser"}
    assert config.timeouts.pin == 30.0


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({}, "terminal", "required"),
        ({"terminal": {"id": "SHORT"}}, "terminal.id", "8 characters"),
        ({"terminal": {"id": 12345678}}, "terminal.id", "must be str"),
        ({"terminal": {"id": "ATM00001", "currency": "EUR"}}, "terminal.currency", "3-digit"),
        ({"terminal": {"id": "ATM00001"}, "host": {"port": "x"}}, "host.port", "must be int"),
        ({"terminal": {"id": "ATM00001"}, "host": {"prot": 1}}, "host.prot", "unknown key"),
        ({"terminal": {"id": "ATM00001"}, "timeouts": {"pin": -1}}, "timeouts.pin", "positive"),
        (
            {"terminal": {"id": "ATM00001"}, "devices": {"printer": {"backend": "sim"}}},
            "devices.printer",
            "unknown device",
        ),
        (
            {"terminal": {"id": "ATM00001"}, "devices": {"dispenser": {}}},
            "devices.dispenser.backend",
            "required",
        ),
        (
            {"terminal": {"id": "ATM00001"}, "devices": {"dispenser": {"backend": "lcdm9"}}},
            "devices.dispenser.backend",
            "unknown backend",
        ),
        ({"terminal": {"id": "ATM00001"}, "extra": {}}, "extra", "unknown section"),
    ],
)
def test_errors_name_file_and_key(data: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "kiosk.toml")
    assert info.value.source == "kiosk.toml"
    assert info.value.key == key
    assert problem in str(info.value)
    assert str(info.value).startswith(f"kiosk.toml: {key}")


def test_bad_device_option_is_a_config_error() -> None:
    config = parse_config(
        {
            "terminal": {"id": "ATM00001"},
            "devices": {"dispenser": {"backend": "sim", "colour": "red"}},
        },
        "k.toml",
    )
    with pytest.raises(ConfigError, match=r"devices\.dispenser"):
        build_devices(config, ManualClock())


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[terminal\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
