"""Supervisor mode on a running terminal: enter, replenish and balance, print, leave.

Why it wraps the :class:`~terminal.app.Terminal` rather than living in it: supervisor
work happens between customers, never inside a session, and needs only what the terminal
already has (its host link, devices, journal). While :attr:`Terminal.supervisor` is set
the terminal serves no one (out of service, "supervisor mode" on the screen); the host
is told on entry and exit (0800/171, 0800/172) and sees it in ``atm host status``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from atm_common.errors import AtmError
from host_link.codec import Message
from host_link.codes import Mti, NetworkCode
from host_link.supervision import CassetteCount
from terminal.app import Terminal
from terminal.fsm.customer import State
from terminal.link_security import with_ksn
from terminal.session.printing import print_lines
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.exchange import Balancing, StorageExchange
from terminal.supervisor.receipts import balancing_report, journal_printout
from terminal.supervisor.reporter import current_status
from terminal.supervisor.roles import SupervisorMode
from terminal.supervisor.status_message import status_request
from terminal.ui import Screen

log = logging.getLogger(__name__)

IDLE_STATES = (State.IDLE, State.OUT_OF_SERVICE)


class SupervisorConsole:
    def __init__(self, terminal: Terminal, mode: SupervisorMode, counters: CashCounters) -> None:
        self.terminal, self.mode, self.counters = terminal, mode, counters

    async def send(self, code: str, data: str = "") -> Message:
        request = {"t": Mti.NETWORK_REQUEST, "70": code} | ({"63": data} if data else {})
        t = self.terminal
        return await t.host.request(with_ksn(t.host.stamp(request), t.devices.pinpad))

    async def enter(self, key: str) -> str:
        t = self.terminal
        role = self.mode.enter(key, in_session=t.state not in IDLE_STATES)
        t.supervisor = role
        if t.state is State.IDLE:
            t.machine.fire("go_out_of_service")
        t.journal.record("supervisor_enter", role=role)
        t.display.show(Screen.SUPERVISOR, role=role)
        await self._tell_host(NetworkCode.SUPERVISOR_ENTER, role)
        return role

    async def leave(self) -> None:
        role = self.mode.leave()
        t = self.terminal
        t.journal.record("supervisor_exit", role=role)
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
        self.counters.sync({c.index: c.count for c in t.devices.dispenser.cassettes()})
        exchange = StorageExchange(self.counters, self.send)
        before = await exchange.start()
        t.journal.record("exchange_start", host_cash=before.host_expected, counters=before.counters)
        return exchange, self.counters.cassettes()

    async def end_exchange(
        self, exchange: StorageExchange, shown: list[CassetteCount]
    ) -> tuple[Balancing, list[str]]:
        """EndExchange: balanced by the host, journaled, the report shown and printed."""
        t = self.terminal
        result = await exchange.end()
        t.journal.record(
            "exchange_end",
            exchange=result.exchange_id,
            host_expected=result.host_expected,
            found=result.found,
            difference=result.difference,
            loaded=result.loaded,
        )
        if result.difference:
            t.journal.record(
                "cash_difference", amount=result.difference, exchange=result.exchange_id
            )
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
