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
    assert config.host.tls is not None and not config.host.plain  # TLS unless told otherwise
    assert config.host.tls.ca == SIM_CONFIG.parent / "../../var/pki/ca.pem"
    devices = build_devices(config, ManualClock())
    with devices.dispenser:
        assert [c.denomination for c in devices.dispenser.cassettes()] == [2000, 5000]


def test_defaults_fill_devices() -> None:
    config = parse_config({"terminal": {"id": "ATM00009"}, "host": {"plain": True}}, "t.toml")
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
        (
            {"terminal": {"id": "ATM00001"}, "host": {"plain": True}, "timeouts": {"pin": -1}},
            "timeouts.pin",
            "positive",
        ),
        (
            {"terminal": {"id": "ATM00001"}, "devices": {"scanner": {"backend": "sim"}}},
            "devices.scanner",
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
            "host": {"plain": True},
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


def test_host_transport_must_be_chosen_tls_paths_relative_to_the_file(tmp_path: Path) -> None:
    term = {"id": "ATM00001"}
    for host in ({}, {"port": 8583}, {"plain": False}):
        with pytest.raises(ConfigError, match=r"k\.toml: host: choose .*tls = .*plain = true"):
            parse_config({"terminal": term, "host": host}, "k.toml")
    with pytest.raises(ConfigError, match="choose"):
        parse_config({"terminal": term}, "k.toml")  # no [host] at all
    tls = {"ca": "pki/ca.pem", "cert": "pki/t.pem", "key": "/abs/t-key.pem"}
    config = parse_config({"terminal": term, "host": {"tls": tls}}, "k.toml", tmp_path)
    assert config.host.tls is not None and not config.host.plain
    assert config.host.tls.ca == tmp_path / "pki" / "ca.pem"
    assert config.host.tls.key == Path("/abs/t-key.pem")
    both = {"tls": tls, "plain": True}
    with pytest.raises(ConfigError, match=r"host\.plain: cannot be true with host\.tls"):
        parse_config({"terminal": term, "host": both}, "k.toml")
    with pytest.raises(ConfigError, match=r"host\.tls\.key: is required"):
        parse_config({"terminal": term, "host": {"tls": {"ca": "a", "cert": "b"}}}, "k.toml")
    with pytest.raises(ConfigError, match=r"host\.tls\.pin: unknown key"):
        parse_config({"terminal": term, "host": {"tls": {**tls, "pin": "x"}}}, "k.toml")
    assert parse_config({"terminal": term, "host": {"plain": True}}, "k.toml").host.plain


def test_a_terminal_refuses_a_config_without_transport_and_missing_tls_files(
    tmp_path: Path,
) -> None:
    from atm_common.tls import TlsFiles
    from terminal.app import link_context
    from terminal.config import HostConfig, TerminalConfig

    with pytest.raises(ConfigError, match="host: choose"):
        link_context(TerminalConfig("ATM00001", source="k.toml"))
    missing = TlsFiles(tmp_path / "ca.pem", tmp_path / "t.pem", tmp_path / "t-key.pem")
    config = TerminalConfig("ATM00001", host=HostConfig(tls=missing), source="k.toml")
    with pytest.raises(ConfigError, match=r"k\.toml: host\.tls\.ca: .* does not exist"):
        link_context(config)
    assert link_context(TerminalConfig("ATM00001", host=HostConfig(plain=True))) is None
