"""The kiosk loop's status messages: 0800/161 on every change and on a steady rhythm.

Why a task beside :meth:`Terminal.run` rather than inside it: the bank's fleet view and
its routing of cardless customers must learn that a printer ran out of paper or a
dispenser jammed while the machine waits for its next customer, not only when a
supervisor opens the console. The terminal's loop knows nothing of supervision (the
supervisor package wraps the terminal, never the other way round), so ``atm run`` starts
this reporter next to it (``[supervisor] status_interval``).

What is compared for "a change" is what the host would store: the mode and each
device's state, attention and actor. A message the host did not take (not signed on
yet, the link down) is tried again at the next check, so a change is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from atm_common.errors import AtmError
from host_link.supervision import DeviceEntry
from terminal.app import Terminal
from terminal.fsm.customer import State
from terminal.link_security import with_ksn
from terminal.supervisor.attention import status_list
from terminal.supervisor.status_message import status_request

log = logging.getLogger(__name__)

IDLE_STATES = (State.IDLE, State.OUT_OF_SERVICE)


def current_status(terminal: Terminal) -> tuple[str, list[dict[str, Any]]]:
    """The terminal's mode and its devices (``atm diag status`` dicts) right now."""
    if terminal.supervisor:
        mode = "supervisor"
    elif terminal.state in IDLE_STATES:
        mode = "in_service" if terminal.state is State.IDLE else "out_of_service"
    else:
        mode = "in_session"
    drivers = terminal.devices.all()
    devices = [
        {"kind": k, "state": s.value, "error": drivers[k].last_error()}
        for k, s in terminal.devices.status().items()
    ]
    return mode, devices


def cash_in_cassettes(terminal: Terminal) -> int:
    """What the dispenser believes it holds (minor units); 0 when it cannot say."""
    try:
        return sum(c.value for c in terminal.devices.dispenser.cassettes())
    except AtmError:
        return 0


class StatusReporter:
    """Send the status list when it changes (checked every ``check`` s, between
    customers) and at least every ``interval`` s."""

    def __init__(self, terminal: Terminal, interval: float = 60.0, check: float = 2.0) -> None:
        self.terminal, self.interval, self.check = terminal, interval, check
        self.sent = 0
        self._last: tuple[str, tuple[DeviceEntry, ...]] | None = None
        self._last_time = float("-inf")

    async def tick(self) -> bool:
        """One check: send if something changed or the interval passed. True if sent."""
        t = self.terminal
        if t.security_mode is None or t.state not in IDLE_STATES:
            return False  # not signed on (no MAC keys), or a customer is being served
        mode, devices = current_status(t)
        seen = (mode, tuple(status_list(devices)))
        now = asyncio.get_running_loop().time()
        if seen == self._last and now - self._last_time < self.interval:
            return False
        request = status_request(mode, cash_in_cassettes(t), devices)
        try:
            response = await t.host.request(with_ksn(t.host.stamp(request), t.devices.pinpad))
        except AtmError as exc:
            log.warning("status message not sent: %s", exc)
            return False
        if response.get("39") != "00":
            log.warning("host refused the status message: %s", response.get("39"))
            return False
        self._last, self._last_time = seen, now
        self.sent += 1
        if mode != "in_service" or any(e.attention != "none" for e in seen[1]):
            log.info("status sent: %s, %s", mode, [e for e in seen[1] if e.attention != "none"])
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except AtmError as exc:  # a device that cannot say its status: the loop copes
                log.warning("status check failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.check)
