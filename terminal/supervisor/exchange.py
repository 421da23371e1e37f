"""Replenishment and balancing, in the XFS4IoT Storage Exchange model.

``start`` (StartExchange): the host's cash figure for this terminal is asked (0800/181)
and set against the terminal's own counters: the balancing *before* anything is touched.
The host's answer carries the exchange's id (``X=``), which the 182 echoes.
``set_found`` / ``set_load`` (SetStorage): what the replenisher counted in each cassette
and its bins, and what was loaded; nonsense is refused at once (negative, over the
cassette's capacity, a denomination the cassette does not hold, an unknown cassette).
``end`` (EndExchange): counts and load go to the host (0800/182), which balances them
against its books to the cent and answers the figures; the new load becomes the counters.
A difference is never absorbed: it is in the report, the journal and the host's books.

Why the id and the journal rows: the 182 moves the bank's money. Its answer may be lost
(the 182 is then sent again with the same id, and the host answers a booked id with the
stored figures, booking nothing), and the terminal may die between the host's commit and
loading its counters. So ``exchange_sent`` (the id and the counts, nothing of any card)
is journaled durably before the 182 leaves and ``exchange_end`` after the counters are
loaded; :meth:`StorageExchange.recover`, run at the next exchange start, asks the host
again for an id sent but never ended and loads the counters from what it booked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from host_link.codes import NetworkCode
from host_link.errors import HostLinkError
from host_link.supervision import (
    BalancingFigures,
    CassetteCount,
    SupervisionFormatError,
    decode_balancing,
    decode_exchange,
    decode_exchange_start,
    encode_exchange,
)
from terminal.journal import Journal
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import ExchangeInDoubt, SupervisorError

# send(field 70 code, field 63 data) -> the host's 0810 fields
Send = Callable[[str, str], Awaitable[Mapping[str, str]]]
ATTEMPTS = 3  # sends of one 0800/182 before the terminal gives up (the same id each time)
NOT_OPEN = "25"  # the host's code for an exchange id it did not open for this terminal


@dataclasses.dataclass(frozen=True)
class Balancing:
    host_expected: int  # what the bank's books say is in the machine
    counters: int  # what the terminal's counters say
    found: int = 0  # what the replenisher counted
    difference: int = 0  # found - host_expected (negative: a shortage)
    loaded: int = 0
    exchange_id: str = ""


class ExchangeMismatch(SupervisorError):
    """The host's figures do not add up with the counts sent (F is not their sum, or D is
    not F - H). The counters are loaded from what the host booked (its books are the
    truth); ``result`` is that booking, for the report."""

    def __init__(self, message: str, result: Balancing) -> None:
        super().__init__(message)
        self.result = result


class StorageExchange:
    def __init__(
        self,
        counters: CashCounters,
        send: Send,
        journal: Journal | None = None,
        *,
        attempts: int = ATTEMPTS,
        pause: float = 1.0,
    ) -> None:
        """``journal``: where ``exchange_sent`` / ``exchange_end`` go (without one, no
        recovery after a crash); ``attempts`` sends of the 182, ``pause`` s apart."""
        self.counters, self.send, self.journal = counters, send, journal
        self.attempts, self.pause = attempts, pause
        self.before: Balancing | None = None
        self._found: dict[int, CassetteCount] = {}
        self._load: dict[int, int] = {}

    async def start(self) -> Balancing:
        answer = await self._ask(NetworkCode.EXCHANGE_START, "")
        exchange_id, host_cash = decode_exchange_start(answer)  # checked before any change
        own = sum(c.found_amount for c in self.counters.cassettes())
        self.before = Balancing(host_expected=host_cash, counters=own, exchange_id=exchange_id)
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
        """The notes counted in cassette ``position`` and, of its denomination, in the bins
        (each bin bounded by the cassette's capacity: a typo is not a huge overage)."""
        self._require_started()
        capacity = self._cassette(position, denomination)
        if min(remaining, rejected, retracted) < 0:
            raise SupervisorError(f"cassette {position}: a count cannot be negative")
        for what, count in (("", remaining), ("rejected ", rejected), ("retracted ", retracted)):
            if count > capacity:
                raise SupervisorError(
                    f"cassette {position}: {what}{count} is over its capacity {capacity}"
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
        found = [self._found[p] for p in sorted(self._found)]
        load = [(pos, cassettes[pos][0], n) for pos, n in sorted(self._load.items())]
        xid = before.exchange_id
        data = encode_exchange(found, load, xid)
        self._record("exchange_sent", exchange=xid, counts=data)
        figures = await self._deliver(xid, data, resent=False)
        self.before = None
        return self._booked(figures, data, before.counters)

    async def recover(self) -> Balancing | None:
        """An exchange sent but never seen to end (the terminal died, or every resend
        went unanswered): the same 182 again; the counters loaded from what the host
        booked. None when there is nothing to recover."""
        if self.journal is None:
            return None
        last = self.journal.latest("exchange_sent", "exchange_end", "exchange_failed")
        if last is None or last.event != "exchange_sent":
            return None
        xid, data = str(last.data.get("exchange", "")), str(last.data.get("counts", ""))
        figures = await self._deliver(xid, data, resent=True)
        return self._booked(figures, data, counters=0, recovered=True)

    def _booked(
        self, figures: BalancingFigures, data: str, counters: int, recovered: bool = False
    ) -> Balancing:
        """The host booked ``data``: the counters loaded, ``exchange_end`` journaled, and
        the host's figures checked against the counts sent."""
        found, loaded = decode_exchange(data)
        cassettes = self.counters.capacities()
        self.counters.load({pos: 0 for pos in cassettes} | {p: n for p, _, n in loaded})
        result = Balancing(
            host_expected=figures.expected,
            counters=counters,
            found=figures.found,
            difference=figures.difference,
            loaded=figures.loaded,
            exchange_id=figures.exchange_id,
        )
        self._record(
            "exchange_end",
            exchange=result.exchange_id,
            host_expected=result.host_expected,
            found=result.found,
            difference=result.difference,
            loaded=result.loaded,
            **({"recovered": True} if recovered else {}),
        )
        if result.difference:
            self._record("cash_difference", amount=result.difference, exchange=result.exchange_id)
        sent = sum(c.found_amount for c in found)
        wrong = []
        if result.found != sent:
            wrong.append(f"found {result.found} is not the {sent} counted")
        if result.difference != result.found - result.host_expected:
            wrong.append(f"difference {result.difference} is not found - expected")
        if wrong:
            message = f"exchange {result.exchange_id}: the host's figures disagree: " + "; ".join(
                wrong
            )
            self._record("exchange_mismatch", exchange=result.exchange_id, problem=message)
            raise ExchangeMismatch(message + " (counters loaded as the host booked)", result)
        return result

    async def _deliver(self, xid: str, data: str, *, resent: bool) -> BalancingFigures:
        """The 182, sent up to ``attempts`` times while no answer comes (same id: the host
        books it once); its answer checked before anything is changed."""
        failure: Exception | None = None
        response: Mapping[str, str] | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.pause)
            try:
                response = await self.send(NetworkCode.EXCHANGE_END, data)
                break
            except HostLinkError as exc:
                failure = exc
        if response is None:
            raise ExchangeInDoubt(
                f"exchange {xid}: no answer to 0800/182 after {self.attempts} tries ({failure});"
                f" it may be booked at the host: check `atm host status` (last exchange"
                f" {xid}); the counters are not loaded, the next exchange start asks again"
            )
        code = response.get("39", "")
        if code != "00":
            # nothing booked by this 182; and none before it when it was the first send
            # or the host no longer knows the id
            if (attempt == 0 and not resent) or code == NOT_OPEN:
                self._record("exchange_failed", exchange=xid, code=code)
            raise SupervisorError(f"host refused 0800/182 of exchange {xid}: response code {code}")
        figures = decode_balancing(response.get("63", ""))
        if figures.exchange_id != xid:
            raise SupervisionFormatError(f"supervision data: X is not the exchange {xid} sent")
        return figures

    def _record(self, event: str, **data: Any) -> None:
        if self.journal is not None:
            self.journal.record(event, None, durable=True, **data)

    def _require_started(self) -> Balancing:
        if self.before is None:
            raise SupervisorError("no exchange started")
        return self.before

    async def _ask(self, code: str, data: str) -> str:
        response = await self.send(code, data)
        if response.get("39") != "00":
            raise SupervisorError(f"host refused 0800/{code}: response code {response.get('39')}")
        return response.get("63", "")
