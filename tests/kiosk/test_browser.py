"""The customer screen in a real Chromium (Playwright) against the terminal's kiosk loop,
a real host and simulated devices: what a customer sees and may touch."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from terminal.drivers.pinpad.sim import Pin
from terminal.fsm.customer import State
from tests.kiosk.conftest import KioskRig, on_screen, wait_for

CAROL = "CAROL CHO"
CAROL_PIN = "2468"  # digits that must never reach the page

DOM_RECORDER = """
window.__dom = [];
new MutationObserver(() => window.__dom.push(document.documentElement.outerHTML))
  .observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


class Frames:
    """Every WebSocket frame the page received or sent."""

    def __init__(self, page: Page) -> None:
        self.received: list[str] = []
        self.sent: list[str] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: self.received.append(str(payload)))
        ws.on("framesent", lambda payload: self.sent.append(str(payload)))

    def snapshots(self) -> Iterator[dict[str, object]]:
        for raw in self.received:
            message = json.loads(raw)
            if message.get("type") == "snapshot":
                yield message


def open_page(page: Page, kiosk: KioskRig) -> Frames:
    frames = Frames(page)
    page.add_init_script(DOM_RECORDER)
    page.goto(kiosk.url)
    on_screen(page, "WELCOME")
    return frames


def insert_card(kiosk: KioskRig, holder: str, pin: str) -> str:
    card, account = kiosk.cards[holder]
    kiosk.pinpad.script(Pin(pin))  # typed on the PIN pad, not on the screen
    kiosk.reader.insert(card)
    return account


def touch(page: Page, key: str) -> None:
    page.click(f'main button[data-key="{key}"]')


def test_a_withdrawal_by_touch_and_no_pin_digit_ever_reaches_the_page(
    kiosk: KioskRig, page: Page
) -> None:
    frames = open_page(page, kiosk)
    account = insert_card(kiosk, CAROL, CAROL_PIN)
    before = kiosk.balance(account)
    on_screen(page, "MENU")
    assert "$" in page.inner_text("h1.text")  # the limit, formatted for the locale
    touch(page, "F1")
    on_screen(page, "ENTER_AMOUNT")
    for key in ("1", "0", "0"):
        touch(page, key)
    wait_for(lambda: page.get_attribute(".typed", "data-typed") == "100", page)
    touch(page, "ENTER")
    on_screen(page, "WELCOME")
    assert kiosk.balance(account) == before - 10_000
    shown = [s["screen"] for s in frames.snapshots()]
    for screen in ("ENTER_PIN", "MENU", "ENTER_AMOUNT", "PLEASE_WAIT", "RECEIPT", "WELCOME"):
        assert screen in shown, shown
    # The PIN's length reached the page as a count, from the pad's own "*" events ...
    assert max(s["pin_length"] for s in frames.snapshots() if s["screen"] == "ENTER_PIN") == 4
    # ... and no PIN digit in any frame either way, nor anywhere the DOM ever was.
    for raw in frames.received + frames.sent:
        assert CAROL_PIN not in raw
    for frame in frames.received:  # the PIN screen never offered or echoed a digit
        message = json.loads(frame)
        if message.get("screen") == "ENTER_PIN":
            assert message["keys"] == ["CANCEL"]
            assert not any(ch.isdigit() for ch in message["text"])
    doms = page.evaluate("window.__dom")
    assert doms and not any(CAROL_PIN in dom for dom in doms)
    assert all(json.loads(sent)["type"] in ("key", "pong") for sent in frames.sent)


def test_the_language_is_chosen_on_the_first_screen_and_reset_for_the_next_customer(
    kiosk: KioskRig, page: Page
) -> None:
    open_page(page, kiosk)
    touch(page, "LANG:zh_Hans")
    page.wait_for_selector('html[lang="zh-Hans"]')
    assert "欢迎" in page.inner_text("h1.text")
    insert_card(kiosk, CAROL, CAROL_PIN)
    on_screen(page, "MENU")
    text = page.inner_text("h1.text")
    assert "取款" in text and "US$" in text  # the amount per the zh_Hans locale
    assert page.inner_text('button[data-key="CANCEL"]') == "取消"
    touch(page, "CANCEL")
    on_screen(page, "WELCOME")
    page.wait_for_selector('html[lang="en"]')
    assert "Welcome" in page.inner_text("h1.text")


def test_a_reload_mid_session_brings_the_current_screen_back(kiosk: KioskRig, page: Page) -> None:
    open_page(page, kiosk)
    insert_card(kiosk, CAROL, CAROL_PIN)
    on_screen(page, "MENU")
    page.reload()
    on_screen(page, "MENU")
    # The keys beside the screen (keyboard F1-F8, Enter, Escape on kiosk hardware) do
    # what the touch buttons do.
    page.keyboard.press("F2")
    on_screen(page, "BALANCE")
    page.keyboard.press("Enter")
    on_screen(page, "WELCOME")


def test_a_key_the_screen_does_not_offer_is_refused_and_changes_nothing(
    kiosk: KioskRig, page: Page
) -> None:
    frames = open_page(page, kiosk)
    page.evaluate("press('F1')")  # the idle screen offers F4 (cardless) and languages only
    wait_for(lambda: any('"refused"' in f for f in frames.received), page)
    insert_card(kiosk, CAROL, CAROL_PIN)
    on_screen(page, "MENU")
    seq = page.get_attribute("main", "data-seq")
    for key in ("F7", "5", "ENTER", "LANG:en"):
        page.evaluate(f"press({json.dumps(key)})")
    wait_for(lambda: sum('"refused"' in f for f in frames.received) >= 5, page)
    assert page.get_attribute("main", "data-screen") == "MENU"
    assert page.get_attribute("main", "data-seq") == seq
    assert kiosk.terminal.state is State.MENU
    touch(page, "CANCEL")
    on_screen(page, "WELCOME")


def test_a_page_without_the_token_or_from_another_origin_is_refused(
    kiosk: KioskRig, page: Page
) -> None:
    base = kiosk.server.url
    assert page.goto(base) is not None and page.goto(base).status == 403  # type: ignore[union-attr]
    response = page.goto(base + "?token=wrong")
    assert response is not None and response.status == 403
    assert "Welcome" not in page.content()
    ws_url = f"ws://127.0.0.1:{kiosk.server.port}/ws?token="
    origin = f"http://127.0.0.1:{kiosk.server.port}"
    with pytest.raises(InvalidStatus):
        connect(ws_url + "wrong", origin=origin)  # type: ignore[arg-type]
    with pytest.raises(InvalidStatus):
        connect(ws_url + kiosk.server.token, origin="http://evil.example")  # type: ignore[arg-type]
    with connect(ws_url + kiosk.server.token, origin=origin) as ws:  # type: ignore[arg-type]
        assert json.loads(ws.recv(5))["type"] == "snapshot"


def test_a_screen_that_stops_answering_puts_the_terminal_out_of_service(
    kiosk: KioskRig, page: Page
) -> None:
    open_page(page, kiosk)
    assert kiosk.terminal.state is State.IDLE
    page.goto("about:blank")  # the page is gone: no heartbeat answers
    wait_for(lambda: kiosk.terminal.state is State.OUT_OF_SERVICE, page)
    assert "screen" in kiosk.terminal.out_of_service_reason
    page.goto(kiosk.url)  # a reconnect: the current screen, then back in service
    on_screen(page, "WELCOME")
    wait_for(lambda: kiosk.terminal.state is State.IDLE, page)
