"""The soak's fault plan: which fault each session gets, and how it is set off.

Kept apart from the session loop (:mod:`sim.soak.harness`) so the list of faults, the
odds and the way each one is armed can be read in one place, and so the loop only asks
"which fault now?" and "disarm it". Every choice is drawn from the run's seeded random
source, in a fixed order, which is what makes the same seed replay the same run.

Three kinds of fault, counted when they really happen: device faults (armed on the
simulated dispenser, counted when armed), network faults (armed on the
:class:`~sim.soak.proxy.FaultProxy`, counted when the proxy fires them) and process
faults (a terminal crash at a journal event, counted when hit; a host ``kill -9`` through
the proxy). The alarm center going down is a fault too: :class:`FlakyAlarmCenter` takes
it down for a few dozen sessions while the host's outbox must hold the alarms.
"""

from __future__ import annotations

import collections
import random
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path

from atm_common.files import private_database
from sim.alarm_center import AlarmCenter
from sim.soak.crash import crash_after
from sim.soak.proxy import FaultProxy
from terminal.app import Terminal
from terminal.drivers.dispenser.sim import SimDispenser

FAULTS = (
    "host_unreachable",
    "response_lost",
    "connection_reset",
    "mac_failure",
    "dispenser_jam",
    "pick_failure",
    "notes_not_taken",
    "terminal_killed",
    "host_killed",
    "alarm_center_down",
    "dispenser_error",
    "approval_never_comes",  # a joint-account session no co-owner approves (harness.py)
)
DEVICE_FAULTS = ("dispenser_jam", "pick_failure", "notes_not_taken", "dispenser_error")
CRASH_POINTS = (
    "pin_entered",
    "authorisation_request",
    "authorisation",
    "dispensing",
    "stacked",
    "cash_taken",
    "cash_retracted",
    "reversal",
    "card_returned",
)
# the proxy's name for a fault it fired -> the soak's name for it
PROXY_NAMES = {
    "unreachable": "host_unreachable",
    "drop_response": "response_lost",
    "reset_mid_request": "connection_reset",
    "corrupt_response": "mac_failure",
    "kill_host": "host_killed",
}


class FlakyAlarmCenter:
    """The alarm center the host reports to, which a fault takes down for a while; with
    ``tls`` (a server context requiring client certificates) over mutual TLS, as in the
    field."""

    def __init__(self, db_path: Path, host_key: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.db_path, self.host_key, self.tls = db_path, host_key, tls
        private_database(db_path)  # the center's store is opened in this process
        self.center: AlarmCenter | None = None
        self.port = 0
        self.back_at: int | None = None  # transaction at which a down center returns
        self._index = 0

    def start(self) -> str:
        """Start it on a free port; returns its URL."""
        self.center = AlarmCenter(self.db_path, host_key=self.host_key, tls=self.tls)
        self.port = self.center.start()
        return self.center.url

    def take_down(self, rng: random.Random) -> bool:
        """Stop it until a later session; False when it is already down."""
        if self.center is None or self.back_at is not None:
            return False
        self.center.stop()  # alarms raised meanwhile must wait in the host's outbox
        self.back_at = self._index + rng.randint(5, 40)
        return True

    def tick(self, i: int) -> None:
        """Session ``i`` begins: bring the center back (same port, same file) if due."""
        self._index = i
        if self.back_at is not None and i >= self.back_at:
            self.center = AlarmCenter(
                self.db_path, port=self.port, host_key=self.host_key, tls=self.tls
            )
            self.center.start()
            self.back_at = None

    def stop(self) -> None:
        if self.center is not None:
            self.center.stop()


class FaultPlan:
    """Draws at most one fault per session from ``faults`` and arms it; counts them."""

    def __init__(self, faults: tuple[str, ...], rng: random.Random, fault_rate: float) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(
                f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})"
            )
        self.faults, self.rng, self.fault_rate = faults, rng, fault_rate
        self.counts: collections.Counter[str] = collections.Counter()

    def draw(self) -> str | None:
        """This session's fault, or None."""
        return (
            self.rng.choice(self.faults)
            if self.faults and self.rng.random() < self.fault_rate
            else None
        )

    def arm(
        self,
        fault: str | None,
        terminal: Terminal,
        dispenser: SimDispenser,
        proxy: FaultProxy,
        center: FlakyAlarmCenter,
    ) -> Callable[[], None]:
        """Set ``fault`` off for the coming session; returns the function that disarms it."""

        def nothing() -> None:
            return None

        responses = lambda body: body[:4] in (b"0110", b"0210")  # noqa: E731
        if fault == "host_unreachable":
            proxy.arm("unreachable")
        elif fault == "response_lost":
            proxy.arm("drop_response", lambda body: body.startswith(b"0210"))
        elif fault == "connection_reset":
            proxy.arm("reset_mid_request", lambda body: body[:4] in (b"0100", b"0200"))
        elif fault == "mac_failure":
            proxy.arm("corrupt_response", responses)
        elif fault == "host_killed":
            proxy.arm("kill_host", lambda body: body[:4] in (b"0100", b"0200"))
        elif fault == "dispenser_jam":
            dispenser.inject_jam(after_notes=self.rng.randrange(0, 4))
        elif fault == "pick_failure":
            dispenser.inject_pick_failure()
        elif fault == "dispenser_error":  # the device stops answering mid-way
            step = self.rng.choice(("dispense", "present"))
            dispenser.inject_device_error(step, after=self.rng.random() < 0.5)
        elif fault == "terminal_killed":
            return crash_after(terminal.journal, self.rng.choice(CRASH_POINTS))
        elif fault == "alarm_center_down" and center.take_down(self.rng):
            self.counts["alarm_center_down"] += 1
        return nothing

    def count_armed(self, fault: str | None) -> None:
        """Device faults count when armed (network faults when fired, crashes when hit)."""
        if fault in DEVICE_FAULTS:
            self.counts[fault] += 1

    def count_fired(self, names: Iterable[str]) -> None:
        """The faults the proxy really fired, by its names."""
        for name in names:
            self.counts[PROXY_NAMES[name]] += 1
