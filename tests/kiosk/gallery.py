"""``make screens``: a PNG of every screen in every language, into docs/screens/<lang>/.

The real page, display and server, and Debian's Chromium (Playwright); each screen shown
with sample values as a session would show it. Run: ``python -m tests.kiosk.gallery DIR``.
"""

from __future__ import annotations

import string
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.i18n import LANGUAGES
from terminal.kiosk.server import KioskServer
from terminal.session.binding import qr_image
from terminal.ui import Amount, Screen
from tests.kiosk.conftest import CHROMIUM, CHROMIUM_ARGS

RECEIPT = " | ".join(
    [
        "2026-12-07 10:15:02  Terminal ATM00001  Main Street branch",
        "Card 476173******0028",
        "STAN 000123  Auth 4F2A91",
        "Withdrawal 100.00  Fee 0.00",
        "Available balance 4,900.00",
    ]
)
SUPERVISOR_REPORT = " | ".join(
    [
        "TERMINAL                        ATM00001",
        "DATE                    2026-12-07 10:30",
        "BY                           replenisher",
        "POS    NOTE  LOAD DISP REJ RETR LEFT",
        "  1   20.00  2000  140   2    0 1858",
        "  2   50.00  1000   61   0    1  938",
        "HOST EXPECTED                $84,060.00",
        "FOUND                        $84,040.00",
        "DIFFERENCE                      -$20.00",
        "STATUS                         SHORTAGE",
    ]
)
SAMPLES: dict[Screen, dict[str, Any]] = {
    Screen.MENU: {"limit": Amount(90_000, "840")},
    Screen.ENTER_AMOUNT: {"limit": Amount(90_000, "840")},
    Screen.CANNOT_DISPENSE: {"notes": "20.00, 50.00"},
    Screen.BALANCE: {"ledger": Amount(500_000, "840"), "available": Amount(490_000, "840")},
    Screen.DECLINED: {"reason": "Insufficient funds."},
    Screen.RECEIPT: {"receipt": RECEIPT},
    Screen.CHOOSE_ROLE: {"options": "F1 treasurer @ Finance   F2 clerk @ Sales"},
    Screen.CORPORATE_MENU: {"options": "F1 Cash withdrawal   F2 Balance"},
    Screen.CHOOSE_ACCOUNT: {"options": "F1 FIN-OPERATING   F2 FIN-PETTY-CASH"},
    Screen.AWAITING_APPROVAL: {"ref": "7F3A92C1", "seconds": 287},
    Screen.BINDING_QR: {
        "png": "screens/bind-1.png",
        "qr": qr_image("https://payapp.example/bind/3b9d0c6e2f1a4c57"),
    },
    Screen.BINDING_FAILED: {"reason": "expired"},
    Screen.NO_RECEIPT: {"reason": "paper out"},
    Screen.SUPERVISOR: {"role": "replenisher"},
    Screen.SUPERVISOR_REFUSED: {"reason": "wrong PIN"},
    Screen.SUPERVISOR_REPORT: {"report": SUPERVISOR_REPORT},
    Screen.SUPERVISOR_KEY: {"problem": ""},
    Screen.SUPERVISOR_LOCKED: {"seconds": "300"},
    Screen.SUPERVISOR_MENU: {
        "role": "replenisher",
        "options": "1 Replenish   2 Balancing report   3 Print journal   6 Paper loaded   0 Leave",
        "problem": "",
    },
    Screen.SUPERVISOR_COUNT: {
        "cassette": "1",
        "denomination": "$20.00",
        "what": "notes remaining",
        "problem": "",
    },
    Screen.SUPERVISOR_STATUS: {
        "status": "card_reader: ok | pinpad: ok | dispenser: ok"
        " | printer: fault, attention now (operator), paper out | host told"
    },
}
PIN_PRESSES = {
    Screen.ENTER_PIN: 4,
    Screen.ENTER_CODE: 6,
    Screen.ENTER_PERSONAL_CODE: 4,
    Screen.SUPERVISOR_KEY: 6,
}
TYPED = {
    Screen.ENTER_AMOUNT: "100",
    Screen.CARDLESS_PHONE: "4915100000006",
    Screen.SUPERVISOR_COUNT: "1858",
}


def sample(screen: Screen) -> dict[str, Any]:
    """Values for ``screen``: the ones above, else an amount for each placeholder."""
    if screen in SAMPLES:
        return SAMPLES[screen]
    names = [field for _, field, _, _ in string.Formatter().parse(screen.value) if field]
    return {name: Amount(12_345, "840") for name in names}


def write_screens(out: Path) -> list[Path]:
    display = KioskDisplay(heartbeat=3600)
    server = KioskServer(display)
    server.start()
    written = []
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1024, "height": 768},
            )
            page = context.new_page()
            page.goto(server.page_url())
            for code in LANGUAGES:
                (out / code).mkdir(parents=True, exist_ok=True)
                for screen in Screen:
                    display.show(screen, **sample(screen))
                    display.choose_language(code)
                    for _ in range(PIN_PRESSES.get(screen, 0)):
                        display.pad_key("*")
                    for digit in TYPED.get(screen, ""):
                        display.pad_key(digit)
                    seq = display.snapshot()["seq"]
                    page.wait_for_selector(f'main[data-seq="{seq}"]')
                    path = out / code / f"{screen.name.lower()}.png"
                    page.screenshot(path=str(path))
                    written.append(path)
            context.close()
    finally:
        server.stop()
    return written


if __name__ == "__main__":
    for written in write_screens(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screens")):
        print(f"wrote {written}")
