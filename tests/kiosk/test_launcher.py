"""The kiosk's own Chromium (terminal.kiosk.browser): kiosk flags, a fresh profile, and
started again when it exits; it opens the page with the token and answers the heartbeat."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from terminal.kiosk.browser import KIOSK_FLAGS, KioskBrowser, chromium_command
from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.server import KioskServer
from terminal.ui import Screen
from tests.kiosk.conftest import CHROMIUM


def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met")


@pytest.fixture
def served() -> Iterator[tuple[KioskDisplay, KioskServer]]:
    display = KioskDisplay(heartbeat=0.5)
    display.show(Screen.WELCOME)
    server = KioskServer(display)
    server.start()
    try:
        yield display, server
    finally:
        server.stop()


def test_the_command_has_the_kiosk_flags_and_a_fresh_profile() -> None:
    command = chromium_command(CHROMIUM, "http://127.0.0.1:1/?token=t", "/tmp/p", headless=False)
    for flag in ("--kiosk", "--noerrdialogs", "--disable-infobars", "--disable-translate"):
        assert flag in KIOSK_FLAGS and flag in command
    assert "--user-data-dir=/tmp/p" in command and command[-1].endswith("token=t")
    assert ("--no-sandbox" in command) == (os.geteuid() == 0)


def test_the_browser_opens_the_page_and_is_started_again_after_a_crash(
    served: tuple[KioskDisplay, KioskServer],
) -> None:
    display, server = served
    browser = KioskBrowser(CHROMIUM, server.page_url(), headless=True)
    browser.start()
    try:
        until(display.responsive)  # the page it opened answers the heartbeat
        first = browser.process
        assert first is not None and browser.starts == 1
        first.kill()  # a crash
        until(lambda: browser.starts == 2 and browser.process is not first)
        until(lambda: browser.process is not None and browser.process.poll() is None)
        time.sleep(2)  # the old page's answers age out ...
        until(display.responsive)  # ... and the new one answers
    finally:
        browser.stop()
    assert browser.process is not None and browser.process.poll() is not None
