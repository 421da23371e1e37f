"""The terminal loop survives one customer and one device: a session that raises ends
with the card handed back, the terminal out of service with a reason, and in service
again on the next try; retries back off; a repeated reason is journalled once."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from typing import Any

from atm_common.backoff import Backoff
from terminal.cli.interactive import parse_inputs
from terminal.drivers.base import DeviceStatus
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.errors import DeviceUnavailable
from terminal.fsm.customer import State
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig


def test_backoff_doubles_up_to_its_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.25, rng=random.Random(7))
    delays = [backoff.next() for _ in range(7)]
    for delay, full in zip(delays, [1, 2, 4, 8, 8, 8, 8], strict=True):
        assert 0.75 * full <= delay <= full
    assert len({round(d, 6) for d in delays[3:]}) == 4  # jittered: terminals do not line up
    backoff.reset()
    assert backoff.next() <= 1.0


def test_a_session_that_raises_hands_the_card_back_and_the_terminal_comes_back(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        terminal = rig.terminal
        # Letters for a PAN: the PIN pad refuses to bind a PIN to it (LocalProtocolError).
        rig.reader.insert(CardData(pan="hello", expiry="3012"))
        assert await terminal.serve_one() is None
        assert terminal.state is State.OUT_OF_SERVICE
        assert terminal.out_of_service_reason.startswith("session: failed: PIN entry needs")
        assert not rig.reader.card_present and not rig.reader.retained  # handed back
        events = [e.event for e in terminal.journal.tail(20)]
        assert {"session_failed", "card_returned", "out_of_service"} <= set(events)
        # The next customer is served: recovery settles the failed session first.
        card, _ = rig.cards["ALICE ARDEN"]
        rig.reader.insert(card)
        rig.pinpad.script(*parse_inputs("pin 1234, F2, enter")[0])
        result = await terminal.serve_one()
        assert result is not None and result.outcome == "balance_shown", result
        ended = [e for e in terminal.journal.tail(40) if e.event == "session_end"]
        assert any(e.data["outcome"].startswith("recovered:") for e in ended)

    with_rig(body)


def test_the_same_reason_again_is_journalled_once_and_shown_once(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        terminal = rig.terminal
        await rig.host.stop()  # every sign-on now fails the same way
        terminal.security_mode = None
        await terminal.host.close()
        for _ in range(20):
            assert not await terminal.ready()
        assert terminal.out_of_service_reason.startswith("host: cannot sign on")
        rows = [e for e in terminal.journal.tail(100) if e.event == "out_of_service"]
        assert len(rows) == 1
        assert isinstance(terminal.display, RecordingDisplay)
        shown = [s for s, _ in terminal.display.shown if s is Screen.OUT_OF_SERVICE]
        assert len(shown) == 1
        stop = asyncio.Event()
        stop.set()
        assert await terminal.pause(stop) <= 1.0  # the first pause; stop cuts it short

    with_rig(body)


class UnpluggableDispenser(SimDispenser):
    """A dispenser on a port that can go away: once unplugged, its handle stays dead
    (OFFLINE) even after the cable is back, until the port is opened afresh."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plugged, self.handle_alive, self.opens = True, False, 0

    def _do_open(self) -> None:
        if not self.plugged:
            raise DeviceUnavailable(self.kind, "cannot open serial port: no such device")
        self.handle_alive = True
        self.opens += 1

    def _do_status(self) -> DeviceStatus:
        return super()._do_status() if self.handle_alive else DeviceStatus.OFFLINE

    def unplug(self) -> None:
        self.plugged = self.handle_alive = False


def test_a_device_that_went_offline_is_reopened_and_the_terminal_comes_back(
    with_rig: Callable[..., Any],
) -> None:
    async def body(rig: Rig) -> None:
        terminal = rig.terminal
        terminal.config = dataclasses.replace(terminal.config, without_dispenser="out_of_service")
        dispenser = UnpluggableDispenser(clock=rig.clock)
        dispenser.open()
        terminal.devices.dispenser = dispenser
        assert terminal.check_devices() and terminal.state is State.IDLE
        dispenser.unplug()
        assert not terminal.check_devices()  # the reopen fails: still no port
        assert terminal.out_of_service_reason == "devices: not ready: {'dispenser': 'offline'}"
        assert not await terminal.ready()
        dispenser.plugged = True  # the cable is back; the old handle is still dead
        assert await terminal.ready(), terminal.out_of_service_reason
        assert terminal.state is State.IDLE and dispenser.opens == 2

    with_rig(body)
