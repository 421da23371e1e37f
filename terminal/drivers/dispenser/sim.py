"""In-process simulated cash dispenser that keeps real note counts.

Why it exists: cash handling is where an ATM must never lose track of money, so the
simulator is an accountant, not a stub. Every note is in exactly one place - a cassette,
the stacker (picked, maybe presented), the customer's hand, the retract bin or the reject
bin - and tests check the conservation invariant::

    initial value == cassettes + handed out + retracted + stacked + rejected

Faults are injected, not random, so a scenario replays exactly: :meth:`inject_jam`,
:meth:`inject_pick_failure`, :meth:`inject_reject`. Picking a note takes
``seconds_per_note`` on the injected clock; a customer who does not take the cash costs
``take_timeout`` on it. Nothing sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError, LocalProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.dispenser.base import Cassette, Dispenser, DispenseResult
from terminal.drivers.dispenser.notes import FEED_JAM, PICK_FAILURE, NoteBooks, NotePath
from terminal.errors import DeviceFault, DeviceTimeout

log = logging.getLogger(__name__)

# Device error codes this simulator can raise (same numbering as the LCDM error byte - 0x20).
FAULT_MESSAGES: Mapping[int, str] = {PICK_FAILURE: "pick-up error", FEED_JAM: "feed jam"}


def _parse_cassettes(spec: Sequence[tuple[int, int] | Mapping[str, int]]) -> list[tuple[int, int]]:
    """(denomination, count) pairs or ``{denomination=, count=}`` tables, numbered 1..n."""
    key = "devices.dispenser.cassettes"
    slots: list[tuple[int, int]] = []
    for i, item in enumerate(spec, start=1):
        try:
            if isinstance(item, Mapping):
                denomination, count = int(item["denomination"]), int(item["count"])
            else:
                denomination, count = (int(v) for v in item)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                "config", f"{key}[{i - 1}]", f"need a denomination and a count ({exc})"
            ) from None
        if denomination <= 0 or count < 0:
            raise ConfigError("config", f"{key}[{i - 1}]", "denomination > 0 and count >= 0")
        slots.append((denomination, count))
    if not slots:
        raise ConfigError("config", key, "at least one cassette is needed")
    return slots


class SimDispenser(NoteBooks, Dispenser):
    """A note dispenser whose customer and faults are scripted."""

    blocking = False  # in-process state: nothing to wait on

    def __init__(
        self,
        clock: Clock | None = None,
        cassettes: Sequence[tuple[int, int] | Mapping[str, int]] = (
            (2000, 500),
            (5000, 200),
        ),
        near_end_threshold: int = 20,
        seconds_per_note: float = 0.2,
    ) -> None:
        super().__init__()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.notes = NotePath(_parse_cassettes(cassettes))
        self.near_end_threshold = near_end_threshold
        self.seconds_per_note = seconds_per_note
        self._presented = False
        self._fault: DeviceFault | None = None
        self._raise_at: str | None = None  # inject_device_error

    def __repr__(self) -> str:
        counts = {i: s.count for i, s in self.notes.slots.items()}
        return f"SimDispenser(cassettes={counts}, stacked={self.notes.stacked.total()})"

    def inject_device_error(self, step: str, *, after: bool = False) -> None:
        """The next ``step`` ("dispense" or "present") fails with no answer at all, the way
        a serial device that stops talking does (``after``: once the step did its work)."""
        if step not in ("dispense", "present"):
            raise ValueError(f"no step {step!r}")
        self._raise_at = f"{step}{'+' if after else ''}"

    def _maybe_raise(self, step: str, done: bool) -> None:
        if self._raise_at == f"{step}{'+' if done else ''}":
            self._raise_at = None
            raise DeviceTimeout(self.kind, f"no answer to {step.upper()}")

    def reset(self) -> None:
        """Clear a fault, as the RESET command does after an engineer cleared the path."""
        self._require_open()
        if self._fault is not None:
            log.info("dispenser reset clears %s", self._fault)
        self._fault = None

    @property
    def presented(self) -> bool:
        """Notes are at the open shutter, waiting for the customer."""
        return self._presented

    # -- the terminal's side ----------------------------------------------------------------

    def _do_status(self) -> DeviceStatus:
        if self._fault is not None:
            return DeviceStatus.FAULT
        if any(c.near_end for c in self._do_cassettes()):
            return DeviceStatus.DEGRADED
        return DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        return {"denominations": tuple(s.denomination for s in self.notes.slots.values())}

    def _do_counter_values(self) -> dict[str, int]:
        """Notes left per cassette, then notes ever picked, handed out, retracted, rejected."""
        counters = {f"cassette{i}": s.count for i, s in self.notes.slots.items()}
        counters["picked"] = sum(s.picked for s in self.notes.slots.values())
        counters["handed_out"] = self.notes.handed_out.total()
        counters["retracted"] = self.notes.retracted.total()
        counters["rejected"] = self.notes.rejected.total()
        return counters

    def _do_last_error(self) -> str | None:
        return str(self._fault) if self._fault is not None else None

    def _do_cassettes(self) -> list[Cassette]:
        return [
            Cassette(s.index, s.denomination, s.count, near_end=s.count <= self.near_end_threshold)
            for s in self.notes.slots.values()
        ]

    def _do_dispense(self, mix: Mapping[int, int]) -> DispenseResult:
        if self._fault is not None:
            raise DeviceFault(self.kind, "in fault state, reset required", code=self._fault.code)
        if self.notes.stacked:
            raise LocalProtocolError("dispenser: stacker not empty; present or retract first")
        for index, n in mix.items():
            if index not in self.notes.slots or n < 0:
                raise LocalProtocolError(f"dispenser: bad mix entry cassette {index} x {n}")
        self._maybe_raise("dispense", done=False)
        moved, rejects, code = self.notes.pick(mix)
        self._clock.advance((moved.total() + rejects.total()) * self.seconds_per_note)
        fault = DeviceFault(self.kind, FAULT_MESSAGES[code], code=code) if code else None
        self._fault = fault
        denominations = {i: s.denomination for i, s in self.notes.slots.items()}
        self._maybe_raise("dispense", done=True)
        return DispenseResult(0, dict(moved), denominations, fault)

    def _do_notes_pending(self) -> bool:
        return bool(self.notes.stacked)

    def _do_present(self, take_timeout: float) -> bool:
        if not self.notes.stacked:
            raise LocalProtocolError("dispenser: nothing in the stacker to present")
        self._presented = True
        self._maybe_raise("present", done=False)
        taken = self.notes.customer_reaches()
        self._maybe_raise("present", done=True)
        if not taken:
            self._clock.advance(take_timeout)
            log.warning("dispenser: cash not taken within %.1f s", take_timeout)
            return False
        self._presented = False
        return True

    def _do_retract(self) -> int:
        """Everything in the stacker (presented or not) goes to the retract bin."""
        self._presented = False
        return self.notes.retract().total()
