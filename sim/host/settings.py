"""The host's settings and key material, as plain frozen data.

The seed loader (:mod:`sim.host.seed`) parses the TOML seed into these; the authoriser,
its rules and the cardless desk only read them. Nothing here touches the database or
the cardless desk, so any host module may import it: it is what let the seed loader and
the cardless package stop importing each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from sim.host.keys import TerminalKeys

__all__ = ["CardlessSettings", "FeeRule", "HostKeys", "HostSettings", "JointSettings", "PointsRule"]


@dataclasses.dataclass(frozen=True, repr=False)
class HostKeys:
    """Keys the host (its HSM, in a real bank) holds. ``repr`` shows none of them."""

    pvk: bytes  # PIN verification key, IBM 3624
    pan_key: bytes  # keys the PAN references stored instead of PANs
    lmk: bytes  # local master key: working keys are stored only under it
    bdk_aes: bytes | None  # AES DUKPT base derivation key
    terminals: dict[str, TerminalKeys]

    def pan_ref(self, pan: str) -> str:
        return hmac.new(self.pan_key, pan.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HostKeys(terminals={sorted(self.terminals)})"


@dataclasses.dataclass(frozen=True)
class FeeRule:
    """A fee: ``flat`` minor units plus ``bps`` basis points (1/100 %) of the amount,
    rounded half up, then kept within ``minimum`` .. ``maximum``. Integers only."""

    flat: int = 0
    bps: int = 0
    minimum: int = 0
    maximum: int | None = None

    def fee(self, amount: int) -> int:
        fee = self.flat + (amount * self.bps + 5_000) // 10_000
        fee = max(fee, self.minimum)
        return fee if self.maximum is None else min(fee, self.maximum)

    def describe(self) -> str:
        parts = [f"{self.flat} flat"] if self.flat or not self.bps else []
        if self.bps:
            parts.append(f"{self.bps} bps")
        if self.minimum:
            parts.append(f"min {self.minimum}")
        if self.maximum is not None:
            parts.append(f"max {self.maximum}")
        return " + ".join(parts)


@dataclasses.dataclass(frozen=True)
class CardlessSettings:
    """The seed's ``[cardless]`` table (see docs/cardless.md for each key)."""

    hold_minutes: int = 60  # a reservation (and its hold) lives this long
    attempts: int = 3  # failed ATM checks that cancel a reservation
    request_minutes: int = 10  # a phone session (SMS code, face, quote, confirm)
    phone_attempts: int = 3  # wrong SMS codes, and face mismatches, per phone session
    face_tolerance: float = 0.5
    min_amount: int = 1_000
    max_amount: int = 100_000
    multiple: int = 1_000  # amounts the ATMs' notes can make
    verify_seconds: int = 300  # a 0200 without credentials needs a passed 0100 this recent
    lockout_failures: int = 10  # consecutive failed checks that lock a phone (NIST: <= 100)
    fees: tuple[tuple[str, FeeRule], ...] = ()  # card product -> rule; "default" for others

    def fee_rule(self, product: str) -> FeeRule | None:
        """The rule for ``product``; no fee table at all means free, a table without the
        product (and without ``default``) means no rule: the quote is refused."""
        if not self.fees:
            return FeeRule()
        table = dict(self.fees)
        return table.get(product) or table.get("default")


@dataclasses.dataclass(frozen=True)
class PointsRule:
    """Core banking's points for one finished operation on an account type: ``base``
    points plus ``points`` for every whole ``per`` minor units of the amount."""

    base: int = 0
    points: int = 1
    per: int = 100


@dataclasses.dataclass(frozen=True)
class JointSettings:
    """The seed's ``[joint]`` table (see docs/joint-accounts.md for each key)."""

    failures_allowed: int = 2  # failed verifications told "try again"; the next one locks
    approval_seconds: int = 120  # a co-owner's approval must come within this
    bind_minutes: int = 60  # every co-owner must authorise a new one within this
    points: tuple[tuple[str, PointsRule], ...] = ()  # account type -> rule; "default"

    def points_rule(self, account_type: str) -> PointsRule:
        table = dict(self.points)
        return table.get(account_type) or table.get("default") or PointsRule()


@dataclasses.dataclass(frozen=True)
class HostSettings:
    currency: str = "840"
    pin_tries: int = 3
    institution_id: str = "100001"
    safety_amount: int = 20_000  # the most a duress session may take, unless the account says
    # share of normal approved 0110s that ask for snapshots too (decoys, dropped on arrival)
    evidence_sample: float = 0.2
    demo: bool = False  # seed ``demo = true``: its keys are public (sim/host/public_keys.py)
    cardless: CardlessSettings = dataclasses.field(default_factory=CardlessSettings)
    joint: JointSettings = dataclasses.field(default_factory=JointSettings)
