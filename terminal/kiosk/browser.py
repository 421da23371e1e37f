"""Chromium in kiosk mode on the page, restarted when it exits while the terminal runs.

The flags are the ones kiosks use: full screen with no way out, no error dialogs or
infobars, no translate bar, no first-run or sync, a fresh profile every start (nothing
a customer did survives a restart), and no background networking.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading

from atm_common.errors import ConfigError

log = logging.getLogger(__name__)

KIOSK_FLAGS = (
    "--kiosk",
    "--noerrdialogs",
    "--disable-infobars",
    "--disable-translate",
    "--disable-features=Translate",
    "--no-first-run",
    "--disable-session-crashed-bubble",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--check-for-update-interval=31536000",
)


def chromium_command(binary: str, url: str, profile: str, *, headless: bool) -> list[str]:
    command = [binary, *KIOSK_FLAGS, f"--user-data-dir={profile}"]
    if headless:
        command += ["--headless", "--disable-gpu"]
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to run as root otherwise
    return [*command, url]


class KioskBrowser:
    """Keeps one Chromium on ``url``; a crashed or closed one is started again."""

    def __init__(self, binary: str, url: str, *, headless: bool = False) -> None:
        found = shutil.which(binary)
        if found is None:
            raise ConfigError("config", "kiosk.browser", f"{binary!r} not found")
        self.binary, self.url, self.headless = found, url, headless
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep, name="kiosk-browser", daemon=True)
        self.starts = 0

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The Chromium running now (or the last one)."""
        return self._process

    def start(self) -> None:
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.is_set():
            with tempfile.TemporaryDirectory(prefix="kiosk-profile-") as profile:
                command = chromium_command(self.binary, self.url, profile, headless=self.headless)
                self._process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                self.starts += 1
                code = self._process.wait()
            if not self._stop.is_set():
                log.error("kiosk browser exited (%s); starting it again", code)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join(10)
