"""Dispenser contract: the note mix, exact dispenses, faults part-way, and where every
note went (conservation: initial == cassettes + handed out + retracted + stacked + rejected).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_common.clock import ManualClock
from atm_common.errors import ConfigError, LocalProtocolError
from terminal.drivers.base import DeviceStatus
from terminal.drivers.dispenser.base import CannotDispense, Cassette, Dispenser, choose_mix
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.errors import DeviceFault

from .conftest import RIGS, RigFactory

Rig = tuple[Dispenser, Any]


def cas(index: int, denomination: int, count: int, near_end: bool = False) -> Cassette:
    return Cassette(index, denomination, count, near_end)


def assert_conserved(dispenser: Dispenser, customer: Any) -> None:
    in_cassettes = sum(c.value for c in dispenser.cassettes())
    assert in_cassettes == customer.cassette_amount
    assert customer.initial_amount == (
        in_cassettes
        + customer.handed_out_amount
        + customer.retracted_amount
        + customer.stacked_amount
        + customer.rejected_amount
    )


# -- choose_mix (pure; shared by every backend) -------------------------------------------


def test_mix_uses_fewest_notes_where_greedy_would_not() -> None:
    cassettes = [cas(1, 1000, 50), cas(2, 3000, 50), cas(3, 4000, 50)]
    assert choose_mix(6000, cassettes, 40) == {2: 2}  # greedy: 4000 + 1000 + 1000


def test_mix_finds_a_mix_where_greedy_gets_stuck() -> None:
    cassettes = [cas(1, 2000, 50), cas(2, 5000, 50)]
    assert choose_mix(6000, cassettes, 40) == {1: 3}  # greedy: 5000, then 1000 is impossible


def test_mix_prefers_large_notes_on_a_tie() -> None:
    cassettes = [cas(1, 1000, 50), cas(2, 2000, 50), cas(3, 5000, 50)]
    assert choose_mix(8000, cassettes, 40) == {3: 1, 2: 1, 1: 1}
    assert choose_mix(10000, cassettes, 40) == {3: 2}


def test_mix_avoids_near_end_cassettes_when_possible() -> None:
    cassettes = [cas(1, 1000, 50), cas(2, 2000, 10, near_end=True)]
    assert choose_mix(4000, cassettes, 40) == {1: 4}


def test_mix_uses_near_end_cassettes_when_nothing_else_works() -> None:
    cassettes = [cas(1, 1000, 3), cas(2, 2000, 10, near_end=True)]
    mix = choose_mix(6000, cassettes, 40)
    assert sum(n * (1000 if i == 1 else 2000) for i, n in mix.items()) == 6000
    assert mix == {1: 2, 2: 2}  # as few near-end notes as possible


def test_mix_respects_counts_and_skips_empty_cassettes() -> None:
    cassettes = [cas(1, 1000, 10), cas(2, 5000, 0), cas(3, 2000, 1)]
    assert choose_mix(5000, cassettes, 40) == {3: 1, 1: 3}


@pytest.mark.parametrize("amount", [1500, 999, 100000])
def test_mix_impossible_amount_raises(amount: int) -> None:
    cassettes = [cas(1, 1000, 10), cas(2, 2000, 10)]
    with pytest.raises(CannotDispense) as info:
        choose_mix(amount, cassettes, 40)
    assert info.value.device == "dispenser"


def test_mix_respects_max_notes() -> None:
    cassettes = [cas(1, 1000, 100), cas(2, 2000, 5)]
    with pytest.raises(CannotDispense):
        choose_mix(50000, cassettes, 40)  # 5 x 2000 + 40 x 1000 would be 45 notes
    mix = choose_mix(50000, cassettes, 45)
    assert mix == {2: 5, 1: 40}
    assert sum(mix.values()) <= 45


@pytest.mark.parametrize("amount", [0, -1000])
def test_mix_refuses_non_positive_amounts(amount: int) -> None:
    with pytest.raises(LocalProtocolError):
        choose_mix(amount, [cas(1, 1000, 10)], 40)


# -- device contract --------------------------------------------------------------------


def test_cassettes_report_denominations_and_counts(dispenser_rig: Rig) -> None:
    dispenser, _ = dispenser_rig
    assert [(c.index, c.denomination, c.count, c.near_end) for c in dispenser.cassettes()] == [
        (1, 1000, 100, False),
        (2, 2000, 100, False),
        (3, 5000, 50, False),
    ]
    assert dispenser.status() is DeviceStatus.OK


@pytest.mark.parametrize("amount", [1000, 8000, 17000, 23000, 140000])
def test_dispense_exact_amount(dispenser_rig: Rig, amount: int) -> None:
    dispenser, customer = dispenser_rig
    before = {c.index: c.count for c in dispenser.cassettes()}
    result = dispenser.dispense(amount)
    assert result.complete and result.fault is None
    assert result.requested == amount == result.amount
    after = {c.index: c.count for c in dispenser.cassettes()}
    assert {i: before[i] - after[i] for i in before if before[i] != after[i]} == dict(result.notes)
    assert customer.stacked_amount == amount
    assert_conserved(dispenser, customer)


def test_impossible_dispense_moves_nothing(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    assert dispenser.can_dispense(1500) is False
    with pytest.raises(CannotDispense):
        dispenser.dispense(1500)
    assert customer.stacked_amount == 0
    assert customer.cassette_amount == customer.initial_amount


def test_present_taken_hands_the_cash_out(dispenser_rig: Rig, clock: ManualClock) -> None:
    dispenser, customer = dispenser_rig
    dispenser.dispense(17000)
    start = clock.monotonic()
    assert dispenser.present(take_timeout=30.0) is True
    assert clock.monotonic() == start
    assert customer.handed_out_amount == 17000
    assert customer.stacked_amount == 0
    assert dispenser.retract() == 0
    assert_conserved(dispenser, customer)


def test_present_not_taken_then_retract(dispenser_rig: Rig, clock: ManualClock) -> None:
    dispenser, customer = dispenser_rig
    result = dispenser.dispense(8000)
    customer.script_take_cash(False)
    start = clock.monotonic()
    assert dispenser.present(take_timeout=30.0) is False
    assert clock.monotonic() - start == pytest.approx(30.0)
    assert customer.stacked_amount == 8000  # still at the shutter
    assert dispenser.retract() == sum(result.notes.values()) == 3
    assert customer.retracted_amount == 8000
    assert customer.handed_out_amount == 0
    assert_conserved(dispenser, customer)


def test_jam_after_k_notes_reports_exactly_what_moved(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    customer.inject_jam(after_notes=4)
    before = sum(c.value for c in dispenser.cassettes())
    result = dispenser.dispense(23000)  # 4 x 5000 + 1 x 2000 + 1 x 1000: 6 notes
    assert result.fault is not None and result.fault.code == 0x02
    assert "jam" in str(result.fault)
    assert not result.complete
    assert sum(result.notes.values()) == 4
    left = before - sum(c.value for c in dispenser.cassettes())
    assert result.amount == left == customer.stacked_amount
    assert result.amount == sum(n * result.denominations[i] for i, n in result.notes.items())
    assert dispenser.status() is DeviceStatus.FAULT
    assert_conserved(dispenser, customer)


def test_fault_blocks_dispense_until_reset(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    customer.inject_jam(after_notes=1)
    dispenser.dispense(8000)
    assert dispenser.retract() == 1  # clear the partial stack
    with pytest.raises(DeviceFault) as info:
        dispenser.dispense(1000)
    assert info.value.code == 0x02
    customer.reset()
    assert dispenser.status() is DeviceStatus.OK
    assert dispenser.dispense(8000).complete
    assert_conserved(dispenser, customer)


def test_a_fault_is_the_last_error_until_reset(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    customer.inject_jam(after_notes=1)
    dispenser.dispense(8000)
    assert dispenser.status() is DeviceStatus.FAULT
    assert "jam" in (dispenser.last_error() or "")
    dispenser.retract()
    customer.reset()
    assert dispenser.status() is DeviceStatus.OK
    assert dispenser.last_error() is None


def test_counter_values_follow_the_cassettes(dispenser_rig: Rig) -> None:
    dispenser, _ = dispenser_rig
    before = dispenser.counter_values()
    result = dispenser.dispense(23000)
    after = dispenser.counter_values()
    for cassette in dispenser.cassettes():
        assert after[f"cassette{cassette.index}"] == cassette.count
        moved = result.notes.get(cassette.index, 0)
        assert before[f"cassette{cassette.index}"] - after[f"cassette{cassette.index}"] == moved
    assert dispenser.info()["denominations"] == (1000, 2000, 5000)


def test_pick_failure_moves_no_notes(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    customer.inject_pick_failure()
    result = dispenser.dispense(8000)
    assert result.fault is not None and result.fault.code == 0x01
    assert dict(result.notes) == {} and result.amount == 0
    assert customer.cassette_amount == customer.initial_amount
    assert dispenser.status() is DeviceStatus.FAULT


def test_near_end_cassette_degrades_and_is_avoided(dispenser_factory: RigFactory) -> None:
    dispenser, _ = dispenser_factory(cassettes=((1000, 100), (2000, 15)))
    assert dispenser.status() is DeviceStatus.DEGRADED
    assert [c.near_end for c in dispenser.cassettes()] == [False, True]
    result = dispenser.dispense(4000)
    assert dict(result.notes) == {1: 4}


def test_stacker_must_be_cleared_before_the_next_dispense(dispenser_rig: Rig) -> None:
    dispenser, customer = dispenser_rig
    dispenser.dispense(1000)
    with pytest.raises(LocalProtocolError, match="stacker"):
        dispenser.dispense(1000)
    assert customer.stacked_amount == 1000


def test_present_with_empty_stacker_is_refused(dispenser_rig: Rig) -> None:
    dispenser, _ = dispenser_rig
    with pytest.raises(LocalProtocolError):
        dispenser.present(take_timeout=10.0)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("dispense"), st.integers(1, 60).map(lambda n: n * 1000)),
        st.tuples(st.just("present"), st.booleans()),
        st.tuples(st.just("jam"), st.integers(0, 10)),
        st.tuples(st.just("pick_failure"), st.just(0)),
        st.tuples(st.just("reject"), st.integers(1, 3)),
        st.tuples(st.just("retract"), st.just(0)),
        st.tuples(st.just("reset"), st.just(0)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("backend", sorted(RIGS["dispenser"]))
@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_money_is_conserved_under_any_sequence(backend: str, ops: list[tuple[str, int]]) -> None:
    device, customer = RIGS["dispenser"][backend](ManualClock())
    dispenser: Any = device
    with dispenser:
        for op, arg in ops:
            try:
                if op == "dispense":
                    before = customer.cassette_amount + customer.rejected_amount
                    result = dispenser.dispense(arg)
                    assert before - customer.cassette_amount - customer.rejected_amount == (
                        result.amount
                    )
                    assert result.complete or result.fault is not None
                elif op == "present":
                    customer.script_take_cash(bool(arg))
                    dispenser.present(take_timeout=5.0)
                elif op == "jam":
                    customer.inject_jam(after_notes=arg)
                elif op == "pick_failure":
                    customer.inject_pick_failure()
                elif op == "reject":
                    customer.inject_reject(arg)
                elif op == "retract":
                    dispenser.retract()
                else:
                    customer.reset()
            except (CannotDispense, LocalProtocolError):
                pass  # refused before anything moved
            except DeviceFault as exc:
                assert op == "dispense" and dispenser.status() is DeviceStatus.FAULT, exc
            assert_conserved(dispenser, customer)


# -- sim backend specifics ---------------------------------------------------------------


def test_sim_defaults_and_dict_config(clock: ManualClock) -> None:
    with SimDispenser(clock) as dispenser:
        assert [(c.denomination, c.count) for c in dispenser.cassettes()] == [
            (2000, 500),
            (5000, 200),
        ]
    table = [{"denomination": 10000, "count": 30}, {"denomination": 500, "count": 5}]
    with SimDispenser(clock, cassettes=table, near_end_threshold=10) as dispenser:
        assert [(c.index, c.near_end) for c in dispenser.cassettes()] == [(1, False), (2, True)]


@pytest.mark.parametrize(
    "cassettes", [[], [(0, 10)], [(1000, -1)], [{"denomination": 1000}], [("x", 1)]]
)
def test_sim_bad_cassette_config(cassettes: Any) -> None:
    with pytest.raises(ConfigError) as info:
        SimDispenser(cassettes=cassettes)
    assert info.value.key.startswith("devices.dispenser.cassettes")


def test_sim_picking_takes_time_per_note(clock: ManualClock) -> None:
    with SimDispenser(clock, cassettes=((1000, 50),), seconds_per_note=0.5) as dispenser:
        dispenser.dispense(7000)
        assert clock.monotonic() == pytest.approx(3.5)


def test_sim_rejects_go_to_the_reject_bin(clock: ManualClock) -> None:
    with SimDispenser(clock, cassettes=((1000, 50), (5000, 50))) as dispenser:
        dispenser.inject_reject(2)
        result = dispenser.dispense(6000)
        assert result.complete
        # cassettes are picked in slot order: two double-picks of 1000 notes from slot 1
        assert dispenser.rejected_amount == 2000
        assert dispenser.dispensed_notes == {1: 3, 2: 1}
        assert dispenser.present(10.0)
        assert dispenser.handed_out == {1: 1, 2: 1}
        assert_conserved(dispenser, dispenser)
