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

import collections
import dataclasses
import logging
from collections.abc import Mapping, Sequence

from terminal.clock import Clock, SystemClock
from terminal.drivers.base import DeviceStatus
from terminal.drivers.dispenser.base import Cassette, Dispenser, DispenseResult
from terminal.errors import ConfigError, DeviceFault, LocalProtocolError

log = logging.getLogger(__name__)

# Device error codes this simulator can raise (same numbering as the LCDM error byte - 0x20).
PICK_FAILURE = 0x01
FEED_JAM = 0x02
FAULT_MESSAGES: Mapping[int, str] = {PICK_FAILURE: "pick-up error", FEED_JAM: "feed jam"}


@dataclasses.dataclass
class _Slot:
    """One cassette's mutable state."""

    index: int
    denomination: int
    count: int
    dispensed: int = 0  # notes ever picked from this cassette (stacked or rejected)


def _parse_cassettes(spec: Sequence[tuple[int, int] | Mapping[str, int]]) -> list[_Slot]:
    """(denomination, count) pairs or ``{denomination=, count=}`` tables, numbered 1..n."""
    key = "devices.dispenser.cassettes"
    slots: list[_Slot] = []
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
        slots.append(_Slot(i, denomination, count))
    if not slots:
        raise ConfigError("config", key, "at least one cassette is needed")
    return slots


class SimDispenser(Dispenser):
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
        self._slots = {s.index: s for s in _parse_cassettes(cassettes)}
        self._initial_amount = sum(s.denomination * s.count for s in self._slots.values())
        self.near_end_threshold = near_end_threshold
        self.seconds_per_note = seconds_per_note
        self._stacker: collections.Counter[int] = collections.Counter()
        self._presented = False
        self._handed_out: collections.Counter[int] = collections.Counter()
        self._retract_bin: collections.Counter[int] = collections.Counter()
        self._reject_bin: collections.Counter[int] = collections.Counter()
        self._take_script: collections.deque[bool] = collections.deque()
        self._jam_after: int | None = None
        self._pick_failure = False
        self._rejects_pending = 0
        self._fault: DeviceFault | None = None

    def __repr__(self) -> str:
        counts = {i: s.count for i, s in self._slots.items()}
        return f"SimDispenser(cassettes={counts}, stacked={sum(self._stacker.values())})"

    # -- scripting and fault injection ----------------------------------------------------

    def script_take_cash(self, taken: bool) -> None:
        """Queue whether the customer takes the next presented cash (default: taken)."""
        self._take_script.append(taken)

    def inject_jam(self, after_notes: int) -> None:
        """The next dispense jams (code 0x02) after ``after_notes`` notes reached the stacker."""
        if after_notes < 0:
            raise ValueError("after_notes must not be negative")
        self._jam_after = after_notes

    def inject_pick_failure(self) -> None:
        """The next dispense fails to pick its first note (code 0x01); nothing moves."""
        self._pick_failure = True

    def inject_reject(self, notes: int = 1) -> None:
        """The next dispense double-picks ``notes`` times: the extras go to the reject bin."""
        if notes < 0:
            raise ValueError("notes must not be negative")
        self._rejects_pending += notes

    def reset(self) -> None:
        """Clear a fault, as the RESET command does after an engineer cleared the path."""
        self._require_open()
        if self._fault is not None:
            log.info("dispenser reset clears %s", self._fault)
        self._fault = None

    # -- counters ---------------------------------------------------------------------------

    def _value(self, notes: Mapping[int, int]) -> int:
        return sum(n * self._slots[i].denomination for i, n in notes.items())

    @property
    def initial_amount(self) -> int:
        return self._initial_amount

    @property
    def cassette_amount(self) -> int:
        return sum(s.denomination * s.count for s in self._slots.values())

    @property
    def stacked_amount(self) -> int:
        """Cash picked but not yet taken (in the stacker or waiting at the shutter)."""
        return self._value(self._stacker)

    @property
    def handed_out(self) -> Mapping[int, int]:
        """Notes taken by customers, per cassette."""
        return dict(self._handed_out)

    @property
    def handed_out_amount(self) -> int:
        return self._value(self._handed_out)

    @property
    def retracted_amount(self) -> int:
        return self._value(self._retract_bin)

    @property
    def rejected_amount(self) -> int:
        return self._value(self._reject_bin)

    @property
    def dispensed_notes(self) -> Mapping[int, int]:
        """Notes ever picked, per cassette (what the device's counters would say)."""
        return {i: s.dispensed for i, s in self._slots.items()}

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

    def _do_cassettes(self) -> list[Cassette]:
        return [
            Cassette(s.index, s.denomination, s.count, near_end=s.count <= self.near_end_threshold)
            for s in self._slots.values()
        ]

    def _do_dispense(self, mix: Mapping[int, int]) -> DispenseResult:
        if self._fault is not None:
            raise DeviceFault(self.kind, "in fault state, reset required", code=self._fault.code)
        if self._stacker:
            raise LocalProtocolError("dispenser: stacker not empty; present or retract first")
        for index, n in mix.items():
            if index not in self._slots or n < 0:
                raise LocalProtocolError(f"dispenser: bad mix entry cassette {index} x {n}")
        moved: collections.Counter[int] = collections.Counter()
        fault = self._pick(mix, moved)
        self._jam_after, self._pick_failure, self._rejects_pending = None, False, 0
        if fault is not None:
            self._fault = fault
        denominations = {i: s.denomination for i, s in self._slots.items()}
        return DispenseResult(0, dict(moved), denominations, fault)

    def _pick(self, mix: Mapping[int, int], moved: collections.Counter[int]) -> DeviceFault | None:
        """Move notes one by one into the stacker; return the fault that stopped it, if any."""
        for index in sorted(mix):
            slot = self._slots[index]
            for _ in range(mix[index]):
                if self._pick_failure or slot.count == 0:
                    return DeviceFault(self.kind, FAULT_MESSAGES[PICK_FAILURE], code=PICK_FAILURE)
                if self._jam_after is not None and moved.total() >= self._jam_after:
                    return DeviceFault(self.kind, FAULT_MESSAGES[FEED_JAM], code=FEED_JAM)
                while self._rejects_pending and slot.count > 1:
                    self._take_note(slot)
                    self._reject_bin[index] += 1
                    self._rejects_pending -= 1
                self._take_note(slot)
                self._stacker[index] += 1
                moved[index] += 1
        return None

    def _take_note(self, slot: _Slot) -> None:
        slot.count -= 1
        slot.dispensed += 1
        self._clock.advance(self.seconds_per_note)

    def _do_notes_pending(self) -> bool:
        return bool(self._stacker)

    def _do_present(self, take_timeout: float) -> bool:
        if not self._stacker:
            raise LocalProtocolError("dispenser: nothing in the stacker to present")
        self._presented = True
        taken = self._take_script.popleft() if self._take_script else True
        if not taken:
            self._clock.advance(take_timeout)
            log.warning("dispenser: cash not taken within %.1f s", take_timeout)
            return False
        self._handed_out.update(self._stacker)
        self._stacker.clear()
        self._presented = False
        return True

    def _do_retract(self) -> int:
        """Everything in the stacker (presented or not) goes to the retract bin."""
        count = self._stacker.total()
        self._retract_bin.update(self._stacker)
        self._stacker.clear()
        self._presented = False
        return count
