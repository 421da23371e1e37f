"""``atm run --config`` with a ``[kiosk]`` section, as real processes: the host, the device
emulators on ptys (EPP, LCDM, GPS) and the terminal's kiosk loop; the page in Chromium.

From the idle screen, the customer's touch on "Cardless withdrawal" starts a cardless
session in the unattended loop (which waits for a card at the same time): the touch goes
through the EPP driver's clear entry as the screen's key, the pad's ``key_pending`` lets
the loop see it without consuming it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.kiosk.conftest import on_screen

ATM = [sys.executable, "-m", "atm"]
pytestmark = [pytest.mark.serial_pty, pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def atm_run(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The page's URL (with the token this test chose) and the terminal's stdout file."""
    host_port, kiosk_port = free_port(), free_port()
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("host", "devices", "run")}
    procs: list[subprocess.Popen[str]] = []

    def start(argv: list[str], log: str, **kwargs: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, stdout=logs[log], stderr=subprocess.STDOUT, text=True, cwd=tmp_path, **kwargs
        )  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    config = tmp_path / "kiosk.toml"
    try:
        host = [*ATM, "host", "--demo", "--plain", "--db", str(tmp_path / "host.db")]
        start([*host, "--port", str(host_port)], "host")
        devices = [*ATM, "sim", "devices", "--plain", "--card-reader", "sim"]
        devices += ["--host-port", str(host_port)]
        start([*devices, "--config-out", str(config), "--seconds", "300"], "devices")
        deadline = time.monotonic() + 30
        while not config.exists():
            assert all(p.poll() is None for p in procs), (tmp_path / "devices.log").read_text()
            assert time.monotonic() < deadline, "atm sim devices wrote no config"
            time.sleep(0.05)
        time.sleep(0.2)  # the file is written in one go; let it be closed
        with config.open("a") as toml:
            toml.write(f"\n[kiosk]\nport = {kiosk_port}\nheartbeat = 1.0\n")
        token = "run-" + os.urandom(8).hex()
        env = {**os.environ, "ATM_KIOSK_TOKEN": token}
        run = start([*ATM, "run", "--config", str(config)], "run", env=env)
        url = f"http://127.0.0.1:{kiosk_port}/?token={token}"
        out = tmp_path / "run.log"
        deadline = time.monotonic() + 30
        while "customer screen on" not in out.read_text():
            assert run.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert token not in out.read_text()  # the token goes to the browser only
        yield url, out
    finally:
        for proc in reversed(procs):
            stop(proc)
        for log in logs.values():
            log.close()


def test_atm_run_serves_the_page_and_a_touch_on_the_idle_screen_starts_cardless(
    atm_run: tuple[str, Path], page: Page
) -> None:
    url, out = atm_run
    page.goto(url)
    on_screen(page, "WELCOME", timeout=30_000)  # in service once the page answers
    page.click('main button[data-key="F4"]')
    on_screen(page, "CARDLESS_PHONE")
    for key in "4915100000006":
        page.click(f'main button[data-key="{key}"]')
    page.wait_for_selector('.typed[data-typed="4915100000006"]')
    page.click('main button[data-key="ENTER"]')
    on_screen(page, "CARDLESS_METHOD")
    page.click('main button[data-key="CANCEL"]')
    on_screen(page, "WELCOME")
    text = out.read_text()
    assert "Cardless withdrawal: enter your mobile number" in text  # the console echo too
    assert "4915100000006" not in text
