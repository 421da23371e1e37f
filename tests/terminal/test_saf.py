"""Store-and-forward: durable, ordered, retried with backoff, never dropped."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock
from host_link.codec import Message
from sim.scenarios.scripts import WITHDRAW, Scenario
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.errors import JournalError
from terminal.saf import SafQueue
from tests.conftest import Rig

ALICE = "1000000001"


def test_refuses_card_data(tmp_path: Path) -> None:
    saf = SafQueue(tmp_path / "saf.db", ManualClock())
    with pytest.raises(JournalError, match="field 2"):
        saf.enqueue({"t": "0400", "2": "4761739001010010"})
    assert saf.entries() == []


def test_survives_reopen(tmp_path: Path) -> None:
    SafQueue(tmp_path / "saf.db", ManualClock()).enqueue({"t": "0400", "11": "000001"})
    again = SafQueue(tmp_path / "saf.db", ManualClock())
    assert again.pending == 1
    assert again.entries()[0].message == {"t": "0400", "11": "000001"}


def test_cash_retract_with_host_down_is_delivered_later_in_order(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        seen: list[Message] = []
        original = rig.host.authoriser.handle
        down = {"on": False}

        def flaky(request: Message, peer: str = "") -> Message | None:
            seen.append(dict(request))
            if down["on"] and request["t"].startswith("04"):
                return None  # the host is "down" for reversals: no answer
            return original(request, peer)

        rig.host.authoriser.handle = flaky  # type: ignore[method-assign]
        # no sampled snapshot uploads: they would queue in order behind the reversals
        authoriser = rig.host.authoriser
        authoriser.settings = dataclasses.replace(authoriser.settings, evidence_sample=0.0)
        rig.terminal.host.timeout = 0.2
        down["on"] = True
        for amount in ("100", "40"):
            scenario = Scenario(
                "leave",
                "ALICE ARDEN",
                [Pin("1234"), WITHDRAW, Keys(amount)],
                "cash_retracted",
                take_cash=False,
            )
            result = await rig.play(scenario)
            assert result.outcome == "cash_retracted"
        assert rig.terminal.saf.pending == 2, [e.message["t"] for e in rig.terminal.saf.entries()]
        assert rig.balance(ALICE) == before - 14000  # debited until the reversals land
        # the host comes back: the next drain delivers both, oldest first; the first was
        # tried before (a repeat, 0401), the second never overtook it (first try, 0400)
        down["on"] = False
        rig.clock.advance(3600)
        assert await rig.terminal.saf.drain(rig.terminal.host) == 2
        assert rig.terminal.saf.pending == 0
        assert rig.balance(ALICE) == before
        delivered = [m for m in seen if m["t"] in ("0401", "0400")][-2:]
        assert [m["t"] for m in delivered] == ["0401", "0400"]
        assert int(delivered[0]["11"]) < int(delivered[1]["11"])
        # a further repeat of a delivered reversal changes nothing at the host
        assert rig.terminal.saf.entries("done")[0].response_code == "00"

    with_rig(body)


def test_exhausted_retries_go_to_the_exception_queue(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.host.stop()
        await rig.terminal.host.close()
        rig.terminal.host.port = 9
        saf = SafQueue(rig.terminal.config.journal.parent / "x-saf.db", rig.clock, max_attempts=3)
        saf.enqueue({"t": "0400", "11": "000777", "7": "0101120000", "41": "ATM00001"})
        for _ in range(5):
            assert await saf.drain(rig.terminal.host) == 0
            rig.clock.advance(1000)
        assert saf.pending == 0
        (entry,) = saf.entries("exception")
        assert entry.attempts == 3 and "cannot connect" in (entry.last_error or "")
        assert saf.requeue_exceptions() == 1
        assert saf.pending == 1

    with_rig(body)


def test_backoff_holds_entries_until_due(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.host.stop()
        await rig.terminal.host.close()
        rig.terminal.host.port = 9
        saf = SafQueue(rig.terminal.config.journal.parent / "b-saf.db", rig.clock, base_delay=10)
        saf.enqueue({"t": "0400", "11": "000778", "7": "0101120000", "41": "ATM00001"})
        await saf.drain(rig.terminal.host)
        (entry,) = saf.entries()
        assert entry.attempts == 1
        await saf.drain(rig.terminal.host)  # not yet due: no attempt made
        assert saf.entries()[0].attempts == 1
        rig.clock.advance(11)
        await saf.drain(rig.terminal.host)
        assert saf.entries()[0].attempts == 2

    with_rig(body)
