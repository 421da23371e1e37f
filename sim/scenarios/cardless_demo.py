"""Cardless withdrawals in the demo: reserved on the phone (over the host's HTTP API, as
the phone app would), collected at the ATM by code or by face.

Each scenario first plays the phone: request, SMS code, consent and a selfie checked
against the enrolled face, account, amount and method, quote (fee by card type),
confirm (amount + fee frozen). Then the customer walks to the ATM.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from sim.data import FACES_DIR as FACES
from sim.devices.camera_video import photo_frames
from sim.phone.client import PhoneClient
from sim.scenarios.scripts import Customer
from terminal.app import Terminal
from terminal.drivers.camera.sim import SimCamera
from terminal.drivers.pinpad.sim import Fkey, Keys, Pin

FRANK_PHONE = "+4915100000006"
FRANK_DEBIT = "1000000006"
METHOD_KEYS = {"code": "F1", "face": "F2", "both": "F3"}


@dataclasses.dataclass(frozen=True)
class CardlessScenario:
    name: str
    method: str
    amount: int  # minor units
    expected: str
    expected_dispensed: int = 0
    codes: tuple[str | None, ...] = (None,)  # None: the reservation's own code
    face: str = "obama3.jpg"  # who stands in front of the ATM camera
    hold_minutes: float | None = None
    wait_seconds: float = 0.0  # time passing between the phone and the ATM


CARDLESS_DEMO: tuple[CardlessScenario, ...] = (
    CardlessScenario("cardless by code", "code", 10_000, "dispensed", 10_000),
    CardlessScenario("cardless by face", "face", 20_000, "dispensed", 20_000),
    CardlessScenario(
        "cardless: wrong code three times cancels the reservation",
        "code",
        5_000,
        "reservation_cancelled",
        codes=("111111", "222222", "333333"),
    ),
    CardlessScenario(
        "cardless: reservation expired, hold released",
        "code",
        5_000,
        "declined:54",
        hold_minutes=0.02,
        wait_seconds=2.0,
    ),
)


def reserve(api_url: str, scenario: CardlessScenario, ca: Path | None = None) -> dict[str, Any]:
    """The phone side, start to finish; returns the reservation (with its code). An https
    API is verified against ``ca``, the bank's CA certificate."""
    with PhoneClient(api_url, FRANK_PHONE, ca=ca) as phone:
        phone.request()
        code = phone.latest_code()
        if code is None:
            raise RuntimeError("the bank sent no verification SMS")
        phone.verify(code)
        phone.capture_face(FACES / "obama2.jpg")
        accounts = {a["account"] for a in phone.accounts()}
        if FRANK_DEBIT not in accounts:
            raise RuntimeError(f"account {FRANK_DEBIT} not offered: {sorted(accounts)}")
        quote = phone.quote(
            FRANK_DEBIT, scenario.amount, scenario.method, hold_minutes=scenario.hold_minutes
        )
        reservation = phone.confirm(quote["quote_id"])
        return {**reservation, "fee": quote["fee"]}


async def play(
    terminal: Terminal,
    customer: Customer,
    api_url: str,
    scenario: CardlessScenario,
    ca: Path | None = None,
) -> dict[str, Any]:
    """Reserve on the phone, then collect at the ATM; the session report."""
    reservation = await asyncio.to_thread(reserve, api_url, scenario, ca)
    if scenario.wait_seconds:
        await asyncio.sleep(scenario.wait_seconds)
    pinpad, camera = customer.pinpad, terminal.devices.camera
    assert isinstance(camera, SimCamera)
    entries: list[Any] = [Keys(FRANK_PHONE.lstrip("+")), Fkey(METHOD_KEYS[scenario.method])]
    if scenario.method in ("code", "both"):
        entries += [Pin(code or reservation["code"]) for code in scenario.codes]
    pinpad.script(*entries)
    camera.show(list(photo_frames([FACES / scenario.face], frames_per_photo=6)))
    result = await terminal.serve_cardless()
    leftover = pinpad.clear_script()
    camera.show(None)
    outcome = result.outcome if result else f"no session ({terminal.out_of_service_reason})"
    return {
        "name": scenario.name,
        "outcome": outcome,
        "expected": scenario.expected,
        "ok": outcome == scenario.expected
        and (result is not None and result.dispensed == scenario.expected_dispensed)
        and leftover == 0,
        "states": result.states if result else [],
        "dispensed": result.dispensed if result else 0,
        "account": FRANK_DEBIT,
        "card": "cardless",
        "fee": reservation["fee"],
        "reservation": reservation["reservation_id"],
        "unused_inputs": leftover,
    }
