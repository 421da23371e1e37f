"""The demo's payment-app bindings: at the ATM (the QR code decoded from the PNG the
terminal rendered), in the bank app, by pushed message, and the failures that must fail
cleanly (wrong SMS code three times, wrong payment password, an expired address, a
second scanner). Each gives one line of the report's ``bindings``; afterwards the bank's
and the payment server's records must agree (:func:`~sim.scenarios.binding_demo.agreement`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from atm_common.masking import mask_account, mask_user
from sim.payapp.client import PayappError
from sim.payapp.qr import decode_png
from sim.phone import binding as bank_app
from sim.scenarios.binding_demo import BindingWorld, wait_status
from sim.scenarios.scripts import Customer, Scenario, apply
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.pinpad.sim import Fkey, Pin

USERS = ("alice.app", "bob.app", "carol.app", "dave.app", "mallory")
BOB, CAROL, DAVE = (
    ("+4915100000002", "1000000002"),
    ("+4915100000003", "1000000003"),
    (
        "+4915100000004",
        "1000000004",
    ),
)


def _line(
    name: str, account: str, user: str, path: str, status: str, expected: str
) -> dict[str, Any]:
    return {
        "name": name,
        "account": mask_account(account),
        "app_user": mask_user(user),
        "path": path,
        "status": status,
        "expected": expected,
        "ok": status == expected,
    }


def _new_png(directory: Path, seen: set[Path], timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = set(directory.glob("bind-*.png")) - seen if directory.is_dir() else set()
        if found:
            return found.pop()  # written whole (renamed into place) before it shows
        time.sleep(0.05)
    raise AssertionError("the terminal showed no binding QR code")


async def at_atm(
    terminal: Terminal,
    customer: Customer,
    card: CardData,
    pin: str,
    app_side: Any,
) -> tuple[str, Any]:
    """One card session choosing F3 while ``app_side(png)`` plays the app in a thread."""
    screens = terminal.config.journal.parent / "screens"
    seen = set(screens.glob("bind-*.png")) if screens.is_dir() else set()
    apply(Scenario("bind", "", [Pin(pin), Fkey("F3")], "payapp_bound"), customer, card)

    def app() -> Any:
        return app_side(_new_png(screens, seen))

    result, answer = await asyncio.gather(terminal.serve_one(), asyncio.to_thread(app))
    customer.pinpad.clear_script()
    return (result.outcome if result else "no session"), answer


async def play(
    world: BindingWorld,
    terminal: Terminal,
    customer: Customer,
    alice: tuple[CardData, str],
    workdir: Path,
    expiry: float,
) -> dict[str, Any]:
    """Every binding scenario; the report's ``bindings`` and the two sides' agreement."""
    for user in USERS:
        world.register(user)
    lines: list[dict[str, Any]] = []
    card, account = alice

    def alice_app(png: Path) -> str:
        with world.app("alice.app") as app:
            app.scan(decode_png(png))  # the QR code as the camera sees the screen
            answer = world.finish(app, "+4915100000001")
            return "bound" if wait_status(app, answer["binding_id"], "active") else "pending"

    outcome, status = await at_atm(terminal, customer, card, "1234", alice_app)
    status = "bound" if outcome == "payapp_bound" and status == "bound" else outcome
    lines.append(_line("bind at the ATM by QR", account, "alice.app", "atm_qr", status, "bound"))

    def bank_qr(phone: str, acct: str, user: str, name: str, **kw: Any) -> None:
        answer = world.bind_app_qr(user, phone, acct, workdir / f"{user}.png", **kw)
        status = answer["status"]
        if status == "pending":
            with world.app(user) as app:
                status = "bound" if wait_status(app, answer["binding_id"], "active") else status
        expected = "failed" if kw else "bound"
        lines.append(_line(name, acct, user, "app_qr", status, expected))

    await asyncio.to_thread(bank_qr, *BOB, "bob.app", "bind in the bank app by QR")

    def push() -> None:
        answer = world.bind_push("dave.app", *DAVE)
        with world.app("dave.app") as app:
            ok = wait_status(app, answer["binding_id"], "active")
        lines.append(
            _line(
                "bind by a pushed message",
                DAVE[1],
                "dave.app",
                "push",
                "bound" if ok else answer["status"],
                "bound",
            )
        )

    await asyncio.to_thread(push)
    wrong_codes = ("000001", "000002", "000003")
    await asyncio.to_thread(
        bank_qr, *CAROL, "carol.app", "wrong SMS code three times", codes=wrong_codes
    )
    await asyncio.to_thread(
        bank_qr,
        *CAROL,
        "carol.app",
        "wrong payment password",
        passwords=("wrong-1", "wrong-2", "wrong-3"),
    )

    def second_scanner() -> None:
        client, request_id = world.bank_session(DAVE[0])
        with client:
            session = bank_app.bind(client, request_id, DAVE[1], qr=workdir / "second.png")
        address = decode_png(workdir / "second.png")
        with world.app("dave.app") as dave, world.app("mallory") as mallory:
            dave.scan(address)
            try:
                mallory.scan(address)
                status = "bound"  # must not happen
            except PayappError as exc:
                status = "refused" if exc.status == 409 else f"error {exc.status}"
            lines.append(
                _line(
                    "a second scanner is refused", DAVE[1], "mallory", "app_qr", status, "refused"
                )
            )
            answer = world.finish(dave, DAVE[0])
            wait_status(dave, answer["binding_id"], "active")
        del session

    await asyncio.to_thread(second_scanner)

    def expired_app(png: Path) -> str:
        time.sleep(expiry + 1.5)  # the customer scans too late
        with world.app("alice.app") as app:
            try:
                app.scan(decode_png(png))
                return "bound"  # must not happen
            except PayappError as exc:
                return "expired" if exc.status == 410 else f"error {exc.status}"

    outcome, status = await at_atm(terminal, customer, card, "1234", expired_app)
    status = "expired" if outcome == "payapp_expired" and status == "expired" else outcome
    lines.append(
        _line("an expired address at the ATM", account, "alice.app", "atm_qr", status, "expired")
    )
    problems = await asyncio.to_thread(world.settled)
    return {
        "bindings": lines,
        "bindings_agree": not problems,
        "binding_problems": problems,
        "bindings_as_expected": all(line["ok"] for line in lines) and not problems,
        "bank_bindings": len(world.bank_bindings()),
    }
