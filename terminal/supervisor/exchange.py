"""Replenishment and balancing, in the XFS4IoT Storage Exchange model.

``start`` (StartExchange): the host's cash figure for this terminal is asked (0800/181)
and set against the terminal's own counters: the balancing *before* anything is touched.
``set_found`` / ``set_load`` (SetStorage): what the replenisher counted in each cassette
and its bins, and what was loaded; nonsense is refused at once (negative, over the
cassette's capacity, a denomination the cassette does not hold, an unknown cassette).
``end`` (EndExchange): counts and load go to the host (0800/182), which balances them
against its books to the cent and answers the figures; the new load becomes the counters.
A difference is never absorbed: it is in the report, the journal and the host's books.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping

from host_link.codes import NetworkCode
from host_link.supervision import CassetteCount, encode_exchange, pairs
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError

# send(field 70 code, field 63 data) -> the host's 0810 fields
Send = Callable[[str, str], Awaitable[Mapping[str, str]]]


@dataclasses.dataclass(frozen=True)
class Balancing:
    host_expected: int  # what the bank's books say is in the machine
    counters: int  # what the terminal's counters say
    found: int = 0  # what the replenisher counted
    difference: int = 0  # found - host_expected (negative: a shortage)
    loaded: int = 0
    exchange_id: str = ""


class StorageExchange:
    def __init__(self, counters: CashCounters, send: Send) -> None:
        self.counters = counters
        self.send = send
        self.before: Balancing | None = None
        self._found: dict[int, CassetteCount] = {}
        self._load: dict[int, int] = {}

    async def start(self) -> Balancing:
        answer = await self._ask(NetworkCode.EXCHANGE_START, "")
        own = sum(c.found_amount for c in self.counters.cassettes())
        self.before = Balancing(host_expected=int(pairs(answer)["H"]), counters=own)
        self._found, self._load = {}, {}
        return self.before

    def _cassette(self, position: int, denomination: int) -> int:
        known = self.counters.capacities()
        if position not in known:
            raise SupervisorError(f"cassette {position}: no such cassette")
        denom, capacity = known[position]
        if denomination != denom:
            raise SupervisorError(
                f"cassette {position}: holds {denom}, not {denomination} (unknown denomination)"
            )
        return capacity

    def set_found(
        self, position: int, denomination: int, remaining: int, rejected: int = 0,
        retracted: int = 0,
    ) -> None:  # fmt: skip
        """The notes counted in cassette ``position`` and, of its denomination, in the bins."""
        self._require_started()
        capacity = self._cassette(position, denomination)
        if min(remaining, rejected, retracted) < 0:
            raise SupervisorError(f"cassette {position}: a count cannot be negative")
        if remaining > capacity:
            raise SupervisorError(
                f"cassette {position}: {remaining} is over its capacity {capacity}"
            )
        own = {c.position: c for c in self.counters.cassettes()}[position]
        self._found[position] = dataclasses.replace(
            own, remaining=remaining, rejected=rejected, retracted=retracted
        )

    def set_load(self, position: int, denomination: int, count: int) -> None:
        self._require_started()
        capacity = self._cassette(position, denomination)
        if not 0 <= count <= capacity:
            raise SupervisorError(f"cassette {position}: load {count} is not 0..{capacity}")
        self._load[position] = count

    async def end(self) -> Balancing:
        before = self._require_started()
        cassettes = self.counters.capacities()
        missing = sorted(set(cassettes) - set(self._found))
        if missing:
            raise SupervisorError(f"cassettes {missing} not counted: count every cassette")
        load = [(pos, cassettes[pos][0], n) for pos, n in sorted(self._load.items())]
        data = encode_exchange([self._found[p] for p in sorted(self._found)], load)
        figures = pairs(await self._ask(NetworkCode.EXCHANGE_END, data))
        self.counters.load({pos: self._load.get(pos, 0) for pos in cassettes})
        self.before = None
        return Balancing(
            host_expected=int(figures["H"]),
            counters=before.counters,
            found=int(figures["F"]),
            difference=int(figures["D"]),
            loaded=int(figures["L"]),
            exchange_id=figures.get("X", ""),
        )

    def _require_started(self) -> Balancing:
        if self.before is None:
            raise SupervisorError("no exchange started")
        return self.before

    async def _ask(self, code: str, data: str) -> str:
        response = await self.send(code, data)
        if response.get("39") != "00":
            raise SupervisorError(f"host refused 0800/{code}: response code {response.get('39')}")
        return response.get("63", "")
