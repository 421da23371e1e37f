"""The screens the enterprise, joint-account and binding sessions show offer exactly the
keys those sessions read (touch and the function keys beside the screen are the same
input), and a touch survives a screen that is shown again while it waits."""

from __future__ import annotations

from terminal.drivers.pinpad.base import FUNCTION_KEYS
from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.screens import render
from terminal.session.binding import qr_image
from terminal.session.card import MENU_KEYS
from terminal.session.corporate import ATM_OPERATIONS
from terminal.ui import Amount, Screen


def options(labels: list[str]) -> str:
    """As :meth:`terminal.session.corporate.Corporate._pick` builds the value."""
    keys = FUNCTION_KEYS[: len(labels)]
    return "   ".join(f"{k} {label}" for k, label in zip(keys, labels, strict=False))


def test_the_menus_offer_the_keys_the_card_session_reads() -> None:
    menu = render(Screen.MENU, {"limit": Amount(90_000, "840")}, "en")
    assert set(menu.keys) == set(MENU_KEYS) | {"CANCEL"}
    assert "Payment app" in menu.html
    only = render(Screen.MENU_BALANCE_ONLY, {}, "zh_Hans")
    withdrawal = next(k for k, choice in MENU_KEYS.items() if choice == "withdrawal")
    assert set(only.keys) == set(MENU_KEYS) - {withdrawal} | {"CANCEL"}
    assert "支付应用" in only.html


def test_the_enterprise_choices_offer_one_key_per_option_the_host_gave() -> None:
    roles = ["treasurer @ Finance", "clerk @ Sales", "auditor @ Audit"]
    for screen, labels in [
        (Screen.CHOOSE_ROLE, roles),
        (Screen.CORPORATE_MENU, [label for _, _, label in ATM_OPERATIONS]),
        (Screen.CHOOSE_ACCOUNT, ["FIN-OPERATING"]),
    ]:
        rendered = render(screen, {"options": options(labels)}, "zh_Hans")
        assert rendered.keys == (*FUNCTION_KEYS[: len(labels)], "CANCEL"), screen.name
    menu = render(Screen.CORPORATE_MENU, {"options": options(["Cash withdrawal"])}, "zh_Hans")
    assert "取款" in menu.html and "F2" not in menu.keys


def test_the_waiting_screens_offer_what_their_session_reads() -> None:
    approval = render(Screen.AWAITING_APPROVAL, {"ref": "7F3A92C1", "seconds": 42}, "en")
    assert approval.keys == ("CANCEL",) and "7F3A92C1" in approval.text
    code = render(Screen.ENTER_PERSONAL_CODE, {}, "en", pin_length=2)
    assert code.keys == ("CANCEL",) and code.html.count('class="dot"') == 2
    # the binding session polls the host and reads no key until it ends
    qr = {"png": "bind.png", "qr": qr_image("https://payapp.example/bind/x")}
    assert render(Screen.BINDING_QR, qr, "en").keys == ()
    for screen in (Screen.BINDING_WAIT, Screen.BINDING_DONE, Screen.BINDING_FAILED):
        assert render(screen, {"reason": "expired"}, "zh_Hans").keys == ()
    assert "已过期" in render(Screen.BINDING_FAILED, {"reason": "expired"}, "zh_Hans").text


def test_a_cancel_touched_during_the_countdown_survives_the_next_tick() -> None:
    display = KioskDisplay(heartbeat=3600)
    display.show(Screen.AWAITING_APPROVAL, ref="7F3A92C1", seconds=42)
    assert display.press("CANCEL")
    display.show(Screen.AWAITING_APPROVAL, ref="7F3A92C1", seconds=41)  # the next poll
    assert display.keys.take() == "CANCEL"
    assert display.press("CANCEL")
    display.show(Screen.PLEASE_WAIT)  # another screen: the key meant nothing there
    assert display.keys.take() is None


def test_the_personal_code_is_counted_never_shown() -> None:
    display = KioskDisplay(heartbeat=3600)
    display.show(Screen.ENTER_PERSONAL_CODE)
    for _ in range(3):
        display.pad_key("*")
    snapshot = display.snapshot()
    assert snapshot["pin_length"] == 3 and snapshot["keys"] == ["CANCEL"]


def test_the_supervisor_key_is_counted_never_shown_and_f8_is_never_on_the_page() -> None:
    display = KioskDisplay(heartbeat=3600)
    display.show(Screen.WELCOME)
    assert not display.press("F8")  # the supervisor switch is on the PIN pad only
    display.show(Screen.SUPERVISOR_KEY, problem="")
    for digit in "97531864":  # clear entry: the pad reports the digits themselves
        display.pad_key(digit)
    snapshot = display.snapshot()
    assert snapshot["pin_length"] == 8 and snapshot["keys"] == ["CANCEL"]
    assert "97531864" not in str(snapshot) and "9753" not in snapshot["html"]
    assert not display.press("1")  # no digits from the page either
    # the menu offers the role's digits (and ENTER/CLEAR/CANCEL), translated
    options = "1 Replenish   3 Print journal   0 Leave"
    menu = render(Screen.SUPERVISOR_MENU, {"role": "replenisher", "options": options}, "zh_Hans")
    assert menu.keys == ("1", "3", "0", "CLEAR", "ENTER", "CANCEL")
    assert "加钞清机" in menu.html and "加钞员" in menu.html
    reject_bin = "notes of this denomination in the reject bin (all its cassettes, counted once)"
    count = render(Screen.SUPERVISOR_COUNT, {"what": reject_bin}, "zh_Hans")
    assert "废钞箱中此面额的张数" in count.text and "ENTER" in count.keys
