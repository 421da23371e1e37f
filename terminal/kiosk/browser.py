"""Chromium in kiosk mode on the page, restarted when it exits while the terminal runs.

The flags are the ones kiosks use: full screen with no way out, no error dialogs or
infobars, no translate bar, no first-run or sync, a fresh profile every start (nothing
a customer did survives a restart), and no background networking.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
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
            # Chromium's helpers (zygote, renderers) may still write to the profile for a
            # moment after the browser died: they are ended with it (its own process
            # group), and a file they leave behind must not stop the next start.
            with tempfile.TemporaryDirectory(
                prefix="kiosk-profile-", ignore_cleanup_errors=True
            ) as profile:
                command = chromium_command(self.binary, self.url, profile, headless=self.headless)
                self._process = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                self.starts += 1
                code = self._process.wait()
                _end_group(self._process.pid)
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


def _end_group(pid: int) -> None:
    """End what is left of the browser's process group (its helpers), by its id."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left
        os.killpg(pid, signal.SIGKILL)
