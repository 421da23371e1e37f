"""A cardless withdrawal started from the idle screen, in the browser: the kiosk loop
(:meth:`Terminal.run`) sees the screen's key while it also waits for a card."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page

from atm_common.face.verify import FaceTemplate
from sim.host.cardless.phone import PhoneBank
from terminal.drivers.pinpad.sim import Pin
from tests.cardless.conftest import template  # noqa: F401  (the shared face-template fixture)
from tests.cardless.helpers import FRANK_DEBIT, FRANK_PHONE, reserve
from tests.kiosk.conftest import KioskRig, on_screen, wait_for


def test_a_cardless_withdrawal_started_by_touch_on_the_idle_screen(
    kiosk: KioskRig,
    page: Page,
    template: Callable[[str], FaceTemplate],  # noqa: F811
) -> None:
    probe = template("obama2.jpg")
    reservation = kiosk.in_loop(
        lambda: reserve(PhoneBank(kiosk.host.authoriser.cardless), probe, amount=6_000)
    )
    before = kiosk.balance(FRANK_DEBIT)
    page.goto(kiosk.url)
    on_screen(page, "WELCOME")
    page.click('main button[data-key="F4"]')
    on_screen(page, "CARDLESS_PHONE")
    for key in FRANK_PHONE.lstrip("+"):
        page.click(f'main button[data-key="{key}"]')
    page.click('main button[data-key="ENTER"]')
    on_screen(page, "CARDLESS_METHOD")
    page.click('main button[data-key="F1"]')
    on_screen(page, "ENTER_CODE")
    kiosk.pinpad.script(Pin(str(reservation["code"])))  # the code goes on the PIN pad
    on_screen(page, "WELCOME", timeout=30_000)
    wait_for(lambda: kiosk.balance(FRANK_DEBIT) < before, page)
    assert kiosk.balance(FRANK_DEBIT) == before - 6_000 - 200  # the amount and the fee
    assert str(reservation["code"]) not in page.content()
    assert kiosk.reader.card_present is False
