"""The binding QR is an image on the page, and a real decoder reads it back from a
screenshot of that page: what the customer's payment app would scan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from sim.payapp.qr import QrError, decode_png
from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.server import KioskServer
from terminal.session.binding import qr_image
from terminal.ui import RecordingDisplay, Screen
from tests.kiosk.conftest import on_screen

ADDRESS = "https://payapp.example/bind/5f0c1e9a7d3b4e62a8c1"


@pytest.fixture
def shown() -> Iterator[tuple[KioskDisplay, KioskServer]]:
    display = KioskDisplay(heartbeat=3600)
    server = KioskServer(display)
    server.start()
    try:
        yield display, server
    finally:
        server.stop()


@pytest.mark.parametrize("language", ["en", "zh_Hans"])
def test_the_binding_qr_is_read_back_from_a_screenshot(
    shown: tuple[KioskDisplay, KioskServer], page: Page, tmp_path: Path, language: str
) -> None:
    display, server = shown
    page.goto(server.page_url())
    display.show(Screen.BINDING_QR, png="screens/bind-1.png", qr=qr_image(ADDRESS))
    display.choose_language(language)
    on_screen(page, "BINDING_QR")
    page.wait_for_selector(f'main[data-seq="{display.snapshot()["seq"]}"]')
    image = page.locator('img[data-value="qr"]')
    assert image.get_attribute("src", timeout=5_000) == str(qr_image(ADDRESS))
    page.wait_for_function("document.querySelector('img[data-value=qr]').complete")
    shot = tmp_path / "screen.png"
    page.screenshot(path=str(shot))  # the whole page, as a camera in front of it
    assert decode_png(shot) == ADDRESS
    # and the screen before it (no QR yet) is not read as one
    display.show(Screen.BINDING_WAIT)
    on_screen(page, "BINDING_WAIT")
    page.screenshot(path=str(shot))
    with pytest.raises(QrError, match="no QR code"):
        decode_png(shot)


def test_the_console_shows_the_same_qr_as_text_blocks() -> None:
    recording = RecordingDisplay()
    recording.show(Screen.BINDING_QR, png="screens/bind-1.png", qr=qr_image(ADDRESS))
    text = recording.texts()[0]
    assert "data:image" not in text and "##" in text
    assert text.startswith("Scan this code with your payment app (screens/bind-1.png):")
