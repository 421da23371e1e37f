"""A terminal with the kiosk page, a real host, and Debian's Chromium driven by Playwright.

The rig runs the host and the terminal's kiosk loop (:meth:`Terminal.run`, the loop of
``atm run --config``) on their own event loop in a thread, with the page served by the
real :class:`~terminal.kiosk.server.KioskServer`; the browser is a real Chromium with a
fresh profile. Playwright does not download a browser here: it drives /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from atm_common.clock import ManualClock
from sim.host.app import build_host
from sim.host.server import HostServer
from sim.scenarios.demo import DEMO_SEED, demo_terminal, seed_cards
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import SimPinPad
from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.server import KioskServer

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
] + (["--no-sandbox"] if os.geteuid() == 0 else [])


@dataclasses.dataclass
class KioskRig:
    host: HostServer
    terminal: Terminal
    display: KioskDisplay
    server: KioskServer
    cards: dict[str, tuple[CardData, str]]
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return self.server.page_url()

    @property
    def reader(self) -> SimCardReader:
        reader = self.terminal.devices.card_reader
        assert isinstance(reader, SimCardReader)
        return reader

    @property
    def pinpad(self) -> SimPinPad:
        pinpad = self.terminal.devices.pinpad
        assert isinstance(pinpad, SimPinPad)
        return pinpad

    @property
    def dispenser(self) -> SimDispenser:
        dispenser = self.terminal.devices.dispenser
        assert isinstance(dispenser, SimDispenser)
        return dispenser

    def in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the terminal's thread (the host's database belongs to it)."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def balance(self, account: str) -> int:
        return self.in_loop(lambda: self.host.authoriser.ledger.balance(account).ledger)


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[KioskRig]:
    """The host, the terminal's kiosk loop and the page server, until the test ends."""
    ready: concurrent.futures.Future[KioskRig] = concurrent.futures.Future()
    stop = threading.Event()

    async def main() -> None:
        host = build_host(tmp_path / "host.db", DEMO_SEED, port=0, demo=True, pki=None)
        settings = host.authoriser.settings
        host.authoriser.settings = dataclasses.replace(settings, evidence_sample=0.0)
        port = await host.start()
        terminal = demo_terminal(
            tmp_path, port, DEMO_SEED, ManualClock(dt.datetime.now(dt.UTC)), tls=None
        )
        display = KioskDisplay(heartbeat=1.0)
        terminal.display = display
        display.attach(terminal.devices.pinpad)
        server = KioskServer(display, token="test-token-" + os.urandom(6).hex())
        server.start()
        running = asyncio.Event()
        loop = asyncio.get_running_loop()
        rig = KioskRig(host, terminal, display, server, seed_cards(DEMO_SEED), loop)
        terminal.start()
        task = asyncio.create_task(terminal.run(running, poll=0.05))
        ready.set_result(rig)
        try:
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            running.set()
            await task
            server.stop()
            await terminal.close()
            await host.stop()
            host.authoriser.conn.close()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surface a failed start to the test
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=thread_main, name="kiosk-rig")
    thread.start()
    try:
        yield ready.result(30)
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    """Per test: the sync API runs an event loop on this thread while it is started, so
    it must be stopped before a test that calls ``asyncio.run`` here."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: make setup installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh Chromium profile for each test."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 800},
    )
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Page:
    return browser.pages[0] if browser.pages else browser.new_page()


def on_screen(page: Page, screen: str, timeout: float = 15_000) -> None:
    """Wait until the page shows ``screen`` (its snapshot's name)."""
    page.wait_for_selector(f'main[data-screen="{screen}"]', timeout=timeout)


def wait_for(condition: Callable[[], Any], page: Page, timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it is truthy, letting Playwright deliver its events (the
    sync API dispatches them only while it is called)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"condition not met within {timeout} s")
