"""The 0800/182 moves the bank's money once: a lost answer, a crash before the counters
are loaded, an odd answer, figures that do not add up (terminal + host in one process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from host_link.errors import HostTimeout
from host_link.supervision import SupervisionFormatError, encode_pairs, pairs
from sim.host.supervision.schema import DIFFERENCE_ACCOUNT
from terminal.journal import Journal
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import ExchangeInDoubt, SupervisorError
from terminal.supervisor.exchange import ExchangeMismatch, StorageExchange
from tests.host.helpers import Host, Terminal, open_host

CASH = "GL-CASH-ATM00001"
LOAD = {1: 1_000, 2: 500}


class Crash(BaseException):
    """The terminal process dying (nothing after it runs)."""


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path
        self.clock = ManualClock()
        self.host: Host = open_host(tmp_path / "host.db", self.clock)
        self.terminal = Terminal(self.clock)
        self.terminal.key_exchange(self.host)
        self.counters = CashCounters(tmp_path / "cash.db")
        self.counters.configure([(1, 10_000, 2_000), (2, 2_000, 2_000)])
        self.journal = Journal(tmp_path / "journal.db", self.clock)
        self.lose: list[str] = []  # per 0800: "" delivered, "lost" booked but no answer,
        # "crash" booked then the terminal dies, "down" never reaches the host
        self.sent = 0
        assert self.host_send("171", "replenisher")["39"] == "00"

    def host_send(self, code: str, data: str = "") -> Mapping[str, str]:
        request = {"t": "0800", "70": code} | ({"63": data} if data else {})
        response = self.host.authoriser.handle(self.terminal.client.stamp(request))
        assert response is not None
        return response

    async def send(self, code: str, data: str) -> Mapping[str, str]:
        self.sent += 1
        fate = self.lose.pop(0) if self.lose else ""
        if fate == "down":
            raise HostTimeout("no answer to 0800 (test)")
        response = self.host_send(code, data)
        if fate == "lost":
            raise HostTimeout("no answer to 0800 (test)")
        if fate == "crash":
            raise Crash
        return response

    def exchange(self) -> StorageExchange:
        return StorageExchange(self.counters, self.send, self.journal, pause=0)

    def counted(self, exchange: StorageExchange, short: int = 1) -> None:
        """Everything the host expects, ``short`` 100.00 notes missing; LOAD loaded."""
        assert exchange.before is not None
        notes = exchange.before.host_expected // 10_000
        exchange.set_found(1, 10_000, notes - short)
        exchange.set_found(2, 2_000, 0)
        for pos, n in LOAD.items():
            exchange.set_load(pos, 10_000 if pos == 1 else 2_000, n)

    def booked(self) -> int:
        return self.host.count("cash_exchanges")

    def events(self) -> list[str]:
        return [e.event for e in self.journal.tail(50)]

    def close(self) -> None:
        self.journal.close()
        self.counters.close()
        self.host.conn.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def test_a_lost_answer_is_resent_with_the_same_id_and_booked_once(rig: Rig) -> None:
    exchange = rig.exchange()
    before = asyncio.run(exchange.start())
    rig.counted(exchange)
    rig.lose = ["lost", "down"]  # the host books the first; the second never arrives
    result = asyncio.run(exchange.end())
    assert rig.sent == 1 + 3 and result.exchange_id == before.exchange_id
    assert result.difference == -10_000
    assert rig.booked() == 1 and rig.host.balance(DIFFERENCE_ACCOUNT) == 10_000
    assert rig.host.ledger.check() == []
    assert [c.remaining for c in rig.counters.cassettes()] == [1_000, 500]
    assert rig.events()[-3:] == ["exchange_sent", "exchange_end", "cash_difference"]


def test_no_answer_at_all_says_it_may_be_booked_then_the_next_start_recovers(rig: Rig) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)
    rig.lose = ["lost", "lost", "lost"]
    with pytest.raises(ExchangeInDoubt) as caught:
        asyncio.run(exchange.end())
    message = str(caught.value)
    assert exchange.before is not None
    xid = exchange.before.exchange_id
    assert "may be booked at the host" in message and "atm host status" in message
    assert xid in message
    assert rig.booked() == 1  # booked once, three sends
    assert [c.loaded for c in rig.counters.cassettes()] == [0, 0]  # not loaded: in doubt
    # the next exchange start asks again first: the stored figures, the counters loaded
    again = rig.exchange()
    recovered = asyncio.run(again.recover())
    assert recovered is not None and recovered.exchange_id == xid
    assert recovered.difference == -10_000 and rig.booked() == 1
    assert rig.host.balance(DIFFERENCE_ACCOUNT) == 10_000
    assert [c.loaded for c in rig.counters.cassettes()] == [1_000, 500]
    end = rig.journal.latest("exchange_end")
    assert end is not None and end.data["recovered"] is True and end.data["exchange"] == xid
    assert asyncio.run(rig.exchange().recover()) is None  # nothing left to recover


def test_a_crash_after_the_host_booked_is_recovered_at_the_next_start(
    rig: Rig, tmp_path: Path
) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)
    rig.lose = ["crash"]
    with pytest.raises(Crash):
        asyncio.run(exchange.end())
    rig.journal.close(commit=False)  # what kill -9 leaves behind
    rig.counters.close()
    # the terminal starts again
    rig.journal = Journal(tmp_path / "journal.db", rig.clock)
    rig.counters = CashCounters(tmp_path / "cash.db")
    sent = rig.journal.latest("exchange_sent")
    assert sent is not None and set(sent.data) == {"exchange", "counts"}
    assert [c.loaded for c in rig.counters.cassettes()] == [0, 0]
    recovered = asyncio.run(rig.exchange().recover())
    assert recovered is not None and recovered.loaded == 11_000_000
    assert [c.loaded for c in rig.counters.cassettes()] == [1_000, 500]
    assert rig.booked() == 1 and rig.host.balance(CASH) == 11_000_000
    # and the exchange that follows balances against books and counters that agree
    nxt = rig.exchange()
    before = asyncio.run(nxt.start())
    assert before.host_expected == before.counters == 11_000_000


def test_a_182_the_host_never_saw_is_booked_by_the_recovery(rig: Rig) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)
    rig.lose = ["down", "down", "down"]
    with pytest.raises(ExchangeInDoubt):
        asyncio.run(exchange.end())
    assert rig.booked() == 0
    recovered = asyncio.run(rig.exchange().recover())
    assert recovered is not None and rig.booked() == 1
    assert [c.loaded for c in rig.counters.cassettes()] == [1_000, 500]


def test_a_refused_182_is_not_left_to_recover(rig: Rig) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)
    assert rig.host_send("172")["39"] == "00"  # the host no longer has a replenisher here
    with pytest.raises(SupervisorError, match="response code 57"):
        asyncio.run(exchange.end())
    assert rig.events()[-1] == "exchange_failed" and rig.booked() == 0
    assert asyncio.run(rig.exchange().recover()) is None


ODD = [
    ("", "X, H, F, D, L missing"),
    ("X=Xab;H=1;F=2", "D, L missing"),
    ("X=Xab;H=1;F=2;D=x;L=0", "D is not a whole number"),
    ("H=1;F=1;D=0;L=0", "X missing"),
]


@pytest.mark.parametrize(("answer", "named"), ODD)
def test_an_odd_182_answer_changes_nothing(rig: Rig, answer: str, named: str) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)

    async def odd(code: str, data: str) -> Mapping[str, str]:
        return {"39": "00"} | ({"63": answer} if answer else {})

    exchange.send = odd
    with pytest.raises(SupervisionFormatError, match=named):
        asyncio.run(exchange.end())
    assert [c.loaded for c in rig.counters.cassettes()] == [0, 0]
    assert "exchange_end" not in rig.events()


@pytest.mark.parametrize("answer", ["", "H=5", "X=Xab;H=five"])
def test_an_odd_181_answer_starts_nothing(rig: Rig, answer: str) -> None:
    async def odd(code: str, data: str) -> Mapping[str, str]:
        return {"39": "00"} | ({"63": answer} if answer else {})

    exchange = StorageExchange(rig.counters, odd, rig.journal)
    with pytest.raises(SupervisionFormatError, match="supervision data"):
        asyncio.run(exchange.start())
    assert exchange.before is None


def test_host_figures_that_do_not_add_up_are_loaded_journaled_and_raised(rig: Rig) -> None:
    exchange = rig.exchange()
    asyncio.run(exchange.start())
    rig.counted(exchange)

    async def skewed(code: str, data: str) -> Mapping[str, str]:
        response = dict(await rig.send(code, data))
        figures = pairs(response["63"])
        figures["F"] = str(int(figures["F"]) + 10_000)  # not what was counted, D not F - H
        return response | {"63": encode_pairs(figures)}

    exchange.send = skewed
    with pytest.raises(ExchangeMismatch, match=r"found .* is not the .* counted") as caught:
        asyncio.run(exchange.end())
    assert "difference" in str(caught.value)
    assert caught.value.result.loaded == 11_000_000
    assert [c.loaded for c in rig.counters.cassettes()] == [1_000, 500]  # the host's booking
    assert rig.events()[-1] == "exchange_mismatch"
