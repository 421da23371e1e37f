"""The physical note path both dispenser simulations share.

The in-process :class:`~terminal.drivers.dispenser.sim.SimDispenser` and the LCDM-4000
emulator behind a serial line must pay out identically, note for note, so the cassettes,
the note-by-note pick with its injected faults, the stacker (the LCDM's exit), the bins
and the customer's hand live here once. Every note is always in exactly one place::

    initial value == cassettes + stacked + handed out + retracted + rejected
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence

# Device error codes of the pick (LCDM error byte - 0x20); 0 means no error.
PICK_FAILURE, FEED_JAM, TOO_MANY_REJECTS = 0x01, 0x02, 0x0D


@dataclasses.dataclass
class NoteSlot:
    """One cassette position's mutable state."""

    index: int
    denomination: int
    count: int
    present: bool = True
    near_end: bool = False  # the near-end sensor (the emulator sets it; the sim counts)
    picked: int = 0  # notes ever picked from it (to the stacker or the reject bin)


class NotePath:
    def __init__(self, cassettes: Sequence[tuple[int, int]]) -> None:
        self.slots = {i: NoteSlot(i, int(d), int(n)) for i, (d, n) in enumerate(cassettes, 1)}
        self.initial_amount = self.cassette_amount
        self.stacked: collections.Counter[int] = collections.Counter()
        self.handed_out: collections.Counter[int] = collections.Counter()
        self.retracted: collections.Counter[int] = collections.Counter()
        self.rejected: collections.Counter[int] = collections.Counter()
        self.take_script: collections.deque[bool] = collections.deque()
        self.jam_after: int | None = None
        self.pick_failure = False
        self.rejects_pending = 0

    # -- the scripted customer and injected faults (one dispense each) --

    def script_take_cash(self, taken: bool) -> None:
        """Queue whether the customer takes the next presented cash (default: taken)."""
        self.take_script.append(taken)

    def inject_jam(self, after_notes: int) -> None:
        """The next dispense jams after ``after_notes`` notes reached the stacker."""
        if after_notes < 0:
            raise ValueError("after_notes must not be negative")
        self.jam_after = after_notes

    def inject_pick_failure(self) -> None:
        """The next dispense fails to pick its first note; nothing moves."""
        self.pick_failure = True

    def inject_reject(self, notes: int = 1) -> None:
        """The next dispense double-picks ``notes`` times: the extras go to the reject bin."""
        if notes < 0:
            raise ValueError("notes must not be negative")
        self.rejects_pending += notes

    # -- moving notes --

    def take(self, slot: NoteSlot) -> None:
        slot.count -= 1
        slot.picked += 1

    def pick(
        self,
        wanted: Mapping[int, int],
        *,
        to_stacker: bool = True,
        max_rejects: int | None = None,
    ) -> tuple[collections.Counter[int], collections.Counter[int], int]:
        """Pick note by note, cassettes in order; returns (moved, rejected, error code).

        ``to_stacker`` False sends every note to the reject bin (a test dispense). The
        one-shot faults are used up by this dispense whether they fired or not.
        """
        moved: collections.Counter[int] = collections.Counter()
        rejects: collections.Counter[int] = collections.Counter()
        notes = doubles = 0  # notes that went where they were sent; double picks
        try:
            for index in sorted(wanted):
                slot = self.slots[index]
                for _ in range(wanted[index]):
                    if self.pick_failure or slot.count == 0:
                        return moved, rejects, PICK_FAILURE
                    if self.jam_after is not None and notes >= self.jam_after:
                        return moved, rejects, FEED_JAM
                    while self.rejects_pending and slot.count > 1:
                        if max_rejects is not None and doubles >= max_rejects:
                            return moved, rejects, TOO_MANY_REJECTS
                        doubles += 1
                        self.take(slot)
                        rejects[index] += 1
                        self.rejected[index] += 1
                        self.rejects_pending -= 1
                    self.take(slot)
                    notes += 1
                    if to_stacker:
                        self.stacked[index] += 1
                        moved[index] += 1
                    else:
                        rejects[index] += 1
                        self.rejected[index] += 1
            return moved, rejects, 0
        finally:
            self.jam_after, self.pick_failure, self.rejects_pending = None, False, 0

    def customer_reaches(self) -> bool:
        """The customer at the shutter: takes the stacked notes, or walks away."""
        taken = self.take_script.popleft() if self.take_script else True
        if taken:
            self.handed_out.update(self.stacked)
            self.stacked.clear()
        return taken

    def retract(self) -> collections.Counter[int]:
        """Everything stacked goes to the retract bin; returns what moved."""
        swept = collections.Counter(self.stacked)
        self.retracted.update(swept)
        self.stacked.clear()
        return swept

    # -- the books --

    def value(self, notes: Mapping[int, int]) -> int:
        return sum(n * self.slots[i].denomination for i, n in notes.items())

    @property
    def cassette_amount(self) -> int:
        return sum(s.denomination * s.count for s in self.slots.values())

    def invariant_holds(self) -> bool:
        accounted = self.cassette_amount + self.value(self.stacked)
        accounted += self.value(self.handed_out) + self.value(self.retracted)
        return accounted + self.value(self.rejected) == self.initial_amount


class NoteBooks:
    """Read-only money counters for a device that keeps its notes in ``self.notes``."""

    notes: NotePath

    @property
    def initial_amount(self) -> int:
        return self.notes.initial_amount

    @property
    def cassette_amount(self) -> int:
        return self.notes.cassette_amount

    @property
    def stacked_amount(self) -> int:
        """Cash picked but not yet taken (in the stacker, or waiting at the exit)."""
        return self.notes.value(self.notes.stacked)

    @property
    def handed_out(self) -> dict[int, int]:
        """Notes taken by customers, per cassette."""
        return dict(self.notes.handed_out)

    @property
    def handed_out_amount(self) -> int:
        return self.notes.value(self.notes.handed_out)

    @property
    def retracted_amount(self) -> int:
        return self.notes.value(self.notes.retracted)

    @property
    def rejected(self) -> dict[int, int]:
        """Notes diverted to the reject bin, per cassette."""
        return dict(self.notes.rejected)

    @property
    def rejected_amount(self) -> int:
        return self.notes.value(self.notes.rejected)

    @property
    def dispensed_notes(self) -> dict[int, int]:
        """Notes ever picked, per cassette (what the device's counters would say)."""
        return {i: s.picked for i, s in self.notes.slots.items()}

    def script_take_cash(self, taken: bool) -> None:
        """Queue whether the customer takes the next presented cash (default: taken)."""
        self.notes.script_take_cash(taken)

    def clear_take_script(self) -> None:
        """Forget queued choices no presentation used (a session that ended before cash)."""
        self.notes.take_script.clear()

    def inject_jam(self, after_notes: int) -> None:
        """The next dispense jams (code 0x02) after ``after_notes`` notes reached the stacker."""
        self.notes.inject_jam(after_notes)

    def inject_pick_failure(self) -> None:
        """The next dispense fails to pick its first note (code 0x01); nothing moves."""
        self.notes.inject_pick_failure()

    def inject_reject(self, notes: int = 1) -> None:
        """The next dispense double-picks ``notes`` times: the extras go to the reject bin."""
        self.notes.inject_reject(notes)
