"""Supervisor mode on a running terminal: enter, replenish and balance, print, leave.

Why it wraps the :class:`~terminal.app.Terminal` rather than living in it: supervisor
work happens between customers, never inside a session, and needs only what the terminal
already has (its host link, devices, journal). While :attr:`Terminal.supervisor` is set
the terminal serves no one (out of service, "supervisor mode" on the screen); the host
is told on entry and exit (0800/171, 0800/172) and sees it in ``atm host status``.

Two ways in: a supervisor key (:meth:`SupervisorConsole.enter`), or a supervisor card and
its PIN (:meth:`SupervisorConsole.enter_by_card`), whose role the host decides. A console
takes the kiosk's supervisor cards (``[supervisor] card_prefixes``): inserted at the idle
terminal, such a card starts no customer session but :meth:`SupervisorConsole.card_inserted`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from atm_common.errors import AtmError
from host_link.codec import Message
from host_link.codes import Mti, NetworkCode
from host_link.errors import CodecError, HostLinkError
from host_link.supervision import CassetteCount
from terminal import transactions
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.errors import DeviceError
from terminal.fsm.customer import State
from terminal.link_security import with_ksn
from terminal.session.printing import print_lines
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorCardRefused, SupervisorError
from terminal.supervisor.exchange import Balancing, ExchangeMismatch, StorageExchange
from terminal.supervisor.receipts import balancing_report, journal_printout
from terminal.supervisor.reporter import current_status
from terminal.supervisor.roles import SupervisorMode
from terminal.supervisor.status_message import status_request
from terminal.ui import Screen

log = logging.getLogger(__name__)

IDLE_STATES = (State.IDLE, State.OUT_OF_SERVICE)

# what the refusal screen says for the host's codes (the journal keeps the code itself)
REFUSALS = {
    "14": "card not recognised",
    "54": "card expired",
    "55": "wrong PIN",
    "57": "this card's role does not open this machine",
    "75": "card blocked",
    "host": "no answer from the bank",
}


class SupervisorConsole:
    def __init__(self, terminal: Terminal, mode: SupervisorMode, counters: CashCounters) -> None:
        self.terminal, self.mode, self.counters = terminal, mode, counters
        terminal.supervisor_card = self.card_inserted  # the kiosk's supervisor cards come here

    async def send(self, code: str, data: str = "") -> Message:
        request = {"t": Mti.NETWORK_REQUEST, "70": code} | ({"63": data} if data else {})
        t = self.terminal
        return await t.host.request(with_ksn(t.host.stamp(request), t.devices.pinpad))

    async def enter(self, key: str) -> str:
        t = self.terminal
        in_session = t.state not in IDLE_STATES
        # scrypt per configured role (~0.1 s each): off the loop, so the host link and
        # the status reporter keep running while the key is checked
        role = await asyncio.to_thread(self.mode.enter, key, in_session=in_session)
        self._entered(role)
        await self._tell_host(NetworkCode.SUPERVISOR_ENTER, role)
        return role

    async def enter_by_card(self, card: CardData, pin_block: bytes, ksn: str = "") -> str:
        """Supervisor mode in the role the host gives ``card`` and its PIN block (0800/171
        with fields 2, 14, 52 or 110, 53, built as a customer's request is). Refused, with
        nothing changed, in a customer session or when the host says no
        (:class:`SupervisorCardRefused`, journaled ``supervisor_refused`` with the code)."""
        t = self.terminal
        self.mode.check_entry(in_session=t.state not in IDLE_STATES)
        request = transactions.supervisor_card_entry(t.config, card, pin_block, ksn)
        try:
            response = await t.host.request(with_ksn(t.host.stamp(request), t.devices.pinpad))
        except (HostLinkError, CodecError) as exc:
            t.journal.record("supervisor_refused", pan=card.pan, via="card", error=str(exc))
            raise SupervisorCardRefused("host", "the host did not answer") from None
        code, role = response.get("39", ""), response.get("63", "")
        if code != "00":
            t.journal.record("supervisor_refused", pan=card.pan, via="card", code=code)
            raise SupervisorCardRefused(code, f"the host refused the card ({code})")
        try:
            self.mode.grant(role, in_session=t.state not in IDLE_STATES)
        except SupervisorError as exc:  # the host is in supervisor mode for us: undo it
            t.journal.record("supervisor_refused", pan=card.pan, via="card", error=str(exc))
            await self._tell_host(NetworkCode.SUPERVISOR_EXIT)
            raise
        self._entered(role, card)
        return role

    async def card_inserted(self, card: CardData) -> None:
        """A supervisor card at the idle terminal (``Terminal.supervisor_card``): its PIN
        read on the PIN pad as a block (the clear PIN never leaves the pad), the host's
        check, the card back; then supervisor mode, or a short refusal (the terminal
        goes on serving customers)."""
        t = self.terminal
        t.display.show(Screen.ENTER_PIN)
        entry = t.devices.pinpad.read_pin(card.pan, timeout=t.config.timeouts.pin)
        reason = ""
        if entry.outcome is not EntryOutcome.ENTERED:
            reason = "no PIN"
            t.journal.record("supervisor_refused", pan=card.pan, via="card", reason=reason)
        else:
            try:
                await self.enter_by_card(card, entry.block, entry.ksn)
            except SupervisorCardRefused as exc:
                reason = REFUSALS.get(exc.code, f"refused, code {exc.code}")
            except SupervisorError as exc:
                reason = str(exc)
        if t.supervisor is None:
            t.display.show(Screen.SUPERVISOR_REFUSED, reason=reason)
        else:
            t.display.show(Screen.TAKE_CARD)
        self._card_back(card)
        if t.supervisor is not None:
            t.display.show(Screen.SUPERVISOR, role=t.supervisor)

    def _card_back(self, card: CardData) -> None:
        """The supervisor card back to its owner; retained if not taken (as a customer's)."""
        t = self.terminal
        reader = t.devices.card_reader
        try:
            if reader.eject(t.config.timeouts.take_card):
                t.journal.record("card_returned", pan=card.pan, via="supervisor")
                return
            reader.retain()
            t.journal.record("card_retained", pan=card.pan, via="supervisor", durable=True)
        except DeviceError as exc:
            t.journal.record("card_eject_failed", pan=card.pan, error=str(exc))

    def _entered(self, role: str, card: CardData | None = None) -> None:
        t = self.terminal
        how: dict[str, Any] = {} if card is None else {"via": "card", "pan": card.pan}  # masked
        t.supervisor = role
        if t.state is State.IDLE:
            t.machine.fire("go_out_of_service")
        t.journal.record("supervisor_enter", role=role, **how)
        t.display.show(Screen.SUPERVISOR, role=role)

    async def leave(self, reason: str | None = None) -> None:
        role = self.mode.leave()
        t = self.terminal
        why: dict[str, Any] = {"reason": reason} if reason else {}  # "stop": the kiosk stops
        t.journal.record("supervisor_exit", role=role, **why)
        await self._tell_host(NetworkCode.SUPERVISOR_EXIT)
        t.supervisor = None
        if t.check_devices() and t.state is State.IDLE:
            t.display.show(Screen.WELCOME)

    async def replenish(
        self,
        found: Mapping[int, tuple[int, int, int, int]],
        load: Mapping[int, tuple[int, int]],
    ) -> tuple[Balancing, list[str]]:
        """A whole exchange: ``found`` position -> (denomination, remaining, rejected,
        retracted) counted; ``load`` position -> (denomination, count) put in. Returns the
        balancing and the report's lines (printed when there is a printer)."""
        exchange, shown = await self.start_exchange()
        for pos, (denom, remaining, rejected, retracted) in sorted(found.items()):
            exchange.set_found(pos, denom, remaining, rejected, retracted)
        for pos, (denom, count) in sorted(load.items()):
            exchange.set_load(pos, denom, count)
        return await self.end_exchange(exchange, shown)

    async def start_exchange(self) -> tuple[StorageExchange, list[CassetteCount]]:
        """StartExchange, for a caller that sets the counts one by one (the kiosk's menu,
        terminal/supervisor/desk.py); the counters as they were, for the report."""
        self.mode.require("exchange")
        t = self.terminal
        exchange = StorageExchange(self.counters, self.send, t.journal)
        recovered = await exchange.recover()  # a 182 sent but never seen to end: asked again
        if recovered is not None:
            log.warning("exchange %s recovered from the host", recovered.exchange_id)
        self.counters.sync({c.index: c.count for c in t.devices.dispenser.cassettes()})
        before = await exchange.start()
        t.journal.record("exchange_start", host_cash=before.host_expected, counters=before.counters)
        return exchange, self.counters.cassettes()

    async def end_exchange(
        self, exchange: StorageExchange, shown: list[CassetteCount]
    ) -> tuple[Balancing, list[str]]:
        """EndExchange: balanced by the host, journaled, the report shown and printed."""
        t = self.terminal
        mismatch: ExchangeMismatch | None = None
        try:
            result = await exchange.end()  # journals exchange_sent, exchange_end, differences
        except ExchangeMismatch as exc:  # booked and loaded: the report still comes out
            mismatch, result = exc, exc.result
        if result.difference:
            log.warning("cash difference %d at exchange %s", result.difference, result.exchange_id)
        lines = balancing_report(
            terminal=t.config.terminal_id,
            when=t.clock.now().strftime("%Y-%m-%d %H:%M"),
            role=self.mode.role or "",
            before=shown,
            result=result,
            currency=t.config.currency,
        )
        t.display.show(Screen.SUPERVISOR_REPORT, report=" | ".join(lines))
        self._print(lines, "BALANCING REPORT")
        if mismatch is not None:
            raise mismatch
        return result, lines

    def print_journal(self, count: int = 30) -> list[str]:
        self.mode.require("print_journal")
        lines = journal_printout(e.line() for e in self.terminal.journal.tail(count))
        self._print(lines, "JOURNAL")
        return lines

    async def send_status(self, cash: int = 0) -> Message:
        """The device status list and cash position to the host (0800/161)."""
        t = self.terminal
        mode, devices = current_status(t)
        request = status_request(mode, cash, devices)
        return await t.host.request(with_ksn(t.host.stamp(request), t.devices.pinpad))

    def _print(self, lines: list[str], title: str) -> None:
        printer = self.terminal.devices.printer
        if printer is None:
            return
        failed = print_lines(printer, lines, title=title)
        self.terminal.journal.record(
            "report_printed" if failed is None else "report_not_printed", title=title, error=failed
        )

    async def _tell_host(self, code: str, data: str = "") -> None:
        try:
            response = await self.send(code, data)
        except AtmError as exc:
            self.terminal.journal.record("host_not_told", code=code, error=str(exc))
            return
        if response.get("39") != "00":
            raise SupervisorError(f"host refused 0800/{code}: {response.get('39')}")
