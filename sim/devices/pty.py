"""Run an emulator behind a real pseudo-terminal.

The slave side (``/dev/pts/N``) is what a driver opens, exactly as it would open
``/dev/ttyUSB0``; a thread pumps bytes between the master side and the emulator. The
bridge keeps its own handle on the slave open, so a driver closing and reopening the
port (a restart, a reconnect) finds the device still there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import tty
from types import TracebackType
from typing import Self

from sim.devices.emulator import Emulator

log = logging.getLogger(__name__)


class PtyBridge:
    def __init__(self, emulator: Emulator, name: str, interval: float = 0.02) -> None:
        self.emulator = emulator
        self.name = name
        self.interval = interval
        self.lock = threading.Lock()  # held around every emulator call
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.path = ""

    def start(self) -> str:
        """Create the pty and start pumping; returns the slave path."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._pump, name=f"pty-{self.name}", daemon=True)
        self._thread.start()
        log.info("%s emulator on %s", self.name, self.path)
        return self.path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _pump(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._master], [], [], self.interval)
            try:
                if readable:
                    data = os.read(self._master, 4096)
                    with self.lock:
                        out = self.emulator.receive(data)
                else:
                    with self.lock:
                        out = self.emulator.poll(self.interval)
                if out:
                    os.write(self._master, out)
            except OSError as exc:
                if not self._stop.is_set():
                    log.error("%s pty bridge stopped: %s", self.name, exc)
                return

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
