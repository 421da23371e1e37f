"""Cash dispenser ABC and the denomination mix.

The mix is chosen here, in the driver layer, from what the cassettes report, so every
backend (LCDM over serial, the in-process simulator) dispenses the same notes for the same
amount. A dispense that stops part-way still reports exactly what left the cassettes.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence

from atm_common.errors import LocalProtocolError
from terminal.drivers.base import Device
from terminal.errors import DeviceFault

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cassette:
    """One cassette as reported by the device."""

    index: int  # 1-based slot, as the device numbers them
    denomination: int  # minor units per note
    count: int  # notes believed present
    near_end: bool = False

    @property
    def value(self) -> int:
        return self.denomination * self.count


@dataclasses.dataclass(frozen=True)
class DispenseResult:
    """What physically left the cassettes. ``fault`` is set when it stopped part-way."""

    requested: int
    notes: Mapping[int, int]  # cassette index -> notes moved to the stacker
    denominations: Mapping[int, int]
    fault: DeviceFault | None = None

    @property
    def amount(self) -> int:
        return sum(n * self.denominations[i] for i, n in self.notes.items())

    @property
    def complete(self) -> bool:
        return self.fault is None and self.amount == self.requested


class CannotDispense(DeviceFault):
    """The amount cannot be made from the notes on hand."""


def choose_mix(amount: int, cassettes: Sequence[Cassette], max_notes: int) -> dict[int, int]:
    """Fewest notes for ``amount``; near-end cassettes only when nothing else works.

    Exact search over the (few) cassettes, preferring mixes that leave near-end
    cassettes alone, then the fewest notes, then larger denominations first.
    Raises :class:`CannotDispense` when no mix exists.
    """
    if amount <= 0:
        raise LocalProtocolError(f"dispense amount must be positive, got {amount}")
    usable = sorted((c for c in cassettes if c.count > 0), key=lambda c: -c.denomination)
    best: tuple[tuple[int, int], dict[int, int]] | None = None

    def search(i: int, remaining: int, chosen: dict[int, int], notes: int, near: int) -> None:
        nonlocal best
        if remaining == 0:
            score = (near, notes)
            if best is None or score < best[0]:
                best = (score, dict(chosen))
            return
        if i == len(usable) or notes >= max_notes:
            return
        cas = usable[i]
        most = min(cas.count, remaining // cas.denomination, max_notes - notes)
        for n in range(most, -1, -1):
            if n:
                chosen[cas.index] = n
            search(
                i + 1,
                remaining - n * cas.denomination,
                chosen,
                notes + n,
                near + (n if cas.near_end else 0),
            )
            chosen.pop(cas.index, None)

    search(0, amount, {}, 0, 0)
    if best is None:
        raise CannotDispense("dispenser", f"cannot make {amount} from the notes on hand")
    return best[1]


class Dispenser(Device):
    kind = "dispenser"
    max_notes: int = 40

    def cassettes(self) -> list[Cassette]:
        self._require_open()
        return self._do_cassettes()

    def can_dispense(self, amount: int) -> bool:
        try:
            choose_mix(amount, self.cassettes(), self.max_notes)
        except CannotDispense:
            return False
        return True

    def dispense(self, amount: int) -> DispenseResult:
        """Pick and stack notes for ``amount`` (not yet presented)."""
        self._require_open()
        cassettes = self._do_cassettes()
        mix = choose_mix(amount, cassettes, self.max_notes)
        result = self._do_dispense(mix)
        result = dataclasses.replace(
            result, requested=amount, denominations={c.index: c.denomination for c in cassettes}
        )
        if result.fault is not None:
            log.error("dispense of %d stopped after %d: %s", amount, result.amount, result.fault)
        else:
            log.info("stacked %d in %s", result.amount, dict(result.notes))
        return result

    def present(self, take_timeout: float) -> bool:
        """Open the shutter; True when the customer took the notes in time."""
        self._require_open()
        return self._do_present(take_timeout)

    def retract(self) -> int:
        """Pull presented notes back into the retract bin; returns how many."""
        self._require_open()
        return self._do_retract()

    def notes_pending(self) -> bool:
        """Notes stacked or at the exit, not yet taken: what crash recovery asks first."""
        self._require_open()
        return self._do_notes_pending()

    @abstractmethod
    def _do_notes_pending(self) -> bool: ...

    @abstractmethod
    def _do_cassettes(self) -> list[Cassette]: ...

    @abstractmethod
    def _do_dispense(self, mix: Mapping[int, int]) -> DispenseResult:
        """Move ``mix`` notes to the stacker; on a fault return what moved, with ``fault``."""

    @abstractmethod
    def _do_present(self, take_timeout: float) -> bool: ...

    @abstractmethod
    def _do_retract(self) -> int: ...
