"""``atm run --config`` with a ``[kiosk]`` section: the page server, the display, and
Chromium in kiosk mode when the config names a browser.

The token is made per boot; ``ATM_KIOSK_TOKEN`` in the environment replaces it (a test
that opens the page itself, or a systemd unit that starts the browser separately). The
token is handed only to the browser; what is printed is the address without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from terminal.config import KioskConfig
from terminal.kiosk.browser import KioskBrowser
from terminal.kiosk.display import KioskDisplay
from terminal.kiosk.server import KioskServer

TOKEN_ENV = "ATM_KIOSK_TOKEN"


@contextlib.contextmanager
def kiosk_screen(
    config: KioskConfig, echo: Callable[[str], None] | None = None
) -> Iterator[tuple[KioskDisplay, KioskServer]]:
    """Serve the page for the block's duration (and keep a browser on it if configured)."""
    display = KioskDisplay(echo=echo, heartbeat=config.heartbeat)
    server = KioskServer(display, port=config.port, token=os.environ.get(TOKEN_ENV, ""))
    server.start()
    browser = None
    try:
        if config.browser:
            browser = KioskBrowser(config.browser, server.page_url(), headless=config.headless)
            browser.start()
        yield display, server
    finally:
        if browser is not None:
            browser.stop()
        server.stop()
