"""The joint-account and corporate-card screens in a real Chromium against the kiosk loop
and a real host: the personal code is counted like the PIN, CANCEL touched on the
approval countdown ends the wait, and a corporate card is served by touch alone."""

from __future__ import annotations

from playwright.sync_api import Page

from sim.scenarios.enterprise_demo import CARDS as CORPORATE
from sim.scenarios.joint_demo import PASSWORD
from terminal.drivers.pinpad.sim import Pin
from tests.kiosk.conftest import KioskRig, on_screen, wait_for

GINA_CODE = "3691"  # her personal code on the joint account (sim/scenarios/joint_demo.py)


def touch(page: Page, key: str) -> None:
    page.click(f'main button[data-key="{key}"]')


def test_cancel_touched_on_the_approval_countdown_ends_the_wait_and_moves_nothing(
    kiosk: KioskRig, page: Page
) -> None:
    card, account = kiosk.cards["GINA GRAF"]
    before = kiosk.balance(account)
    page.goto(kiosk.url)
    on_screen(page, "WELCOME")
    kiosk.pinpad.script(Pin(PASSWORD), Pin(GINA_CODE))  # both typed on the PIN pad
    kiosk.reader.insert(card)
    on_screen(page, "MENU")
    touch(page, "F1")
    on_screen(page, "ENTER_AMOUNT")
    for key in ("1", "0", "0", "ENTER"):
        touch(page, key)
    on_screen(page, "AWAITING_APPROVAL")
    assert page.locator("main button[data-key]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.key)"
    ) == ["CANCEL"]
    first = page.inner_text("h1.text")
    wait_for(lambda: page.inner_text("h1.text") != first, page)  # the countdown ticks
    touch(page, "CANCEL")
    on_screen(page, "WELCOME")
    events = [e for e in kiosk.terminal.journal.tail(200) if e.event == "customer_cancel"]
    assert events and events[-1].data["at"] == "awaiting_approval"
    assert kiosk.balance(account) == before
    shown = kiosk.terminal.journal.tail(200)
    assert any(e.event == "personal_code_entered" for e in shown)
    assert GINA_CODE not in str([e.data for e in shown])


def test_a_corporate_card_is_served_by_touch(kiosk: KioskRig, page: Page) -> None:
    name, pin = CORPORATE["jan"]  # a beneficiary: balance only
    card, _ = kiosk.cards[name]
    page.goto(kiosk.url)
    on_screen(page, "WELCOME")
    kiosk.pinpad.script(Pin(pin))
    kiosk.reader.insert(card)
    on_screen(page, "CHOOSE_ROLE")
    touch(page, "F1")
    on_screen(page, "CORPORATE_MENU")
    keys = page.locator("main button[data-key]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.key)"
    )
    assert keys == ["F1", "CANCEL"] and "Balance" in page.inner_text("main")
    touch(page, "F1")
    on_screen(page, "CHOOSE_ACCOUNT")
    touch(page, "F1")
    on_screen(page, "BALANCE")
    touch(page, "ENTER")
    on_screen(page, "WELCOME")
    chosen = [e for e in kiosk.terminal.journal.tail(200) if e.event == "account_chosen"]
    assert chosen
