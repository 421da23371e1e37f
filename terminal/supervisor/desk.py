"""Supervisor mode on the running kiosk loop: the menu on the screen, driven by the PIN pad.

Why a hook of the loop (:data:`terminal.app.Between`) rather than a session: supervisor
work happens between customers and owns the whole machine while it lasts. On every turn
of :meth:`Terminal.run` the desk looks first: F8 at the idle screen asks for the
supervisor key (:mod:`terminal.supervisor.keyentry`); whenever :attr:`Terminal.supervisor`
is set, however it was entered (key here, card + PIN in a session), the loop serves no
customer and the desk runs the menu until the supervisor leaves (0800/172) or no key
comes for ``idle_timeout`` seconds (left by itself, journaled ``supervisor_timeout``).

The menu lists only what the role may do (:data:`terminal.supervisor.roles.FUNCTIONS`),
each under a fixed digit, chosen with the digit and ENTER; ``0`` or CANCEL leaves. What
is refused (a count the exchange will not take, a function the role lacks, a host that
does not answer) is shown on the same screen and asked again: nothing stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from atm_common.errors import AtmError
from atm_common.money import format_minor
from terminal.app import Terminal
from terminal.drivers.base import DeviceStatus
from terminal.drivers.pinpad.base import EntryOutcome, KeyEntry
from terminal.errors import DeviceError
from terminal.fsm.customer import State
from terminal.supervisor.attention import status_list
from terminal.supervisor.console import SupervisorConsole
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.exchange import StorageExchange
from terminal.supervisor.keyentry import SupervisorSwitch
from terminal.supervisor.polling import Stopped, read_keys
from terminal.supervisor.reporter import cash_in_cassettes, current_status
from terminal.supervisor.roles import FUNCTIONS, SupervisorMode
from terminal.ui import Screen

log = logging.getLogger(__name__)

# digit -> (function, label): fixed digits, so a role's menu only leaves gaps
MENU = {
    "1": ("exchange", "Replenish"),
    "2": ("balance_report", "Balancing report"),
    "3": ("print_journal", "Print journal"),
    "4": ("diagnostics", "Device status"),
    "5": ("clear_fault", "Clear faults"),
    "6": ("load_paper", "Paper loaded"),
}
LEAVE = "0"
COUNT_DIGITS = 5  # more than any cassette holds: an over-capacity count is refused, shown
REMAINING = "notes remaining"
# The reject and retract bins are shared by all cassettes: their notes are counted per
# denomination, once (asked at the first cassette of that denomination; the others get 0),
# so two cassettes of one denomination cannot count the same notes twice.
REJECT_BIN = "notes of this denomination in the reject bin (all its cassettes, counted once)"
RETRACT_BIN = "notes of this denomination in the retract bin (all its cassettes, counted once)"


class IdleTimeout(Exception):
    """No key for ``idle_timeout`` s: control flow of the desk, never raised out of it."""


class SupervisorDesk:
    """The kiosk loop's ``between`` hook: F8 + key, then the menu while in supervisor mode."""

    def __init__(
        self,
        console: SupervisorConsole,
        *,
        idle_timeout: float = 300.0,
        lockout: float = 300.0,
        capacity: int = 2000,
    ) -> None:
        self.console = console
        self.switch = SupervisorSwitch(console, lockout=lockout)
        self.idle_timeout, self.capacity = idle_timeout, capacity
        self.last_report: list[str] = []
        # the kiosk loop's stop event (set by serve_until): the prompts read the PIN pad in
        # short windows and supervisor mode is left as soon as it is set
        self.stop: asyncio.Event | None = None

    @classmethod
    def for_kiosk(cls, terminal: Terminal) -> SupervisorDesk:
        """The desk ``atm run`` gives the loop: the ``[supervisor]`` keys, lockout and
        timeout; the cash counters in the terminal's data directory, beside the journal."""
        config = terminal.config
        counters = CashCounters(config.journal.with_name(config.journal.stem + "-cash.db"))
        section = config.supervisor
        return cls(
            SupervisorConsole(terminal, SupervisorMode(section.keys), counters),
            idle_timeout=section.idle_timeout,
            lockout=section.lockout,
            capacity=section.cassette_capacity,
        )

    def close(self) -> None:
        if self.terminal.cash_counters is self.console.counters:
            self.terminal.cash_counters = None
        self.console.counters.close()

    @property
    def terminal(self) -> Terminal:
        return self.console.terminal

    async def __call__(self, terminal: Terminal) -> bool:
        if terminal.cash_counters is None:
            self._keep_counters()
        self.switch.stop = self.stop
        try:
            if terminal.supervisor is None:
                if not self.switch.pressed():
                    return False
                if not await self.switch.take_key():
                    return True
            await self.serve()
        except Stopped:  # the kiosk stops: out of supervisor mode first
            await self.leave_for_stop()
        except AtmError as exc:  # the PIN pad failed (key entry or menu): no desk without it
            await self._failed(exc)
        return True

    async def leave_for_stop(self) -> None:
        """The kiosk stops (SIGTERM, SIGINT): supervisor mode left (0800/172, journaled
        ``supervisor_exit`` with reason ``stop``), or the key entry abandoned."""
        t = self.terminal
        if t.supervisor is None:
            self.switch.back()
            return
        log.info("supervisor mode left: the terminal stops")
        await self._leave_anyway(reason="stop")

    async def _failed(self, exc: AtmError) -> None:
        """A turn that raised: journaled, supervisor mode left if it was on; the loop goes
        on (its own device checks put the terminal out of service)."""
        t = self.terminal
        log.error("supervisor mode: %s", exc)
        t.journal.record("supervisor_device_error", error=str(exc))
        if t.supervisor is None:
            self.switch.back()
            return
        await self._leave_anyway()

    async def _leave_anyway(self, reason: str | None = None) -> None:
        """Leave supervisor mode; out all the same when that fails (never stuck in it)."""
        try:
            await self._leave(reason=reason)
        except AtmError as exc:
            log.error("supervisor mode left, not cleanly: %s", exc)
            self.console.mode.role = None
            self.terminal.supervisor = None

    async def serve(self) -> None:
        """The menu until the supervisor leaves or goes idle."""
        t, mode = self.terminal, self.console.mode
        if t.supervisor is not None and mode.role is None:
            mode.role = t.supervisor  # entered elsewhere (card + PIN): same role here
        problem = ""
        while t.supervisor is not None:
            if self.stop is not None and self.stop.is_set():
                raise Stopped
            role = t.supervisor
            offered = {d: f for d, f in MENU.items() if f[0] in FUNCTIONS.get(role, ())}
            options = "   ".join(f"{d} {label}" for d, (_, label) in offered.items())
            try:
                choice = await self._ask(
                    Screen.SUPERVISOR_MENU,
                    1,
                    role=role,
                    options=f"{options}   {LEAVE} Leave",
                    problem=problem,
                )
                problem = ""
                if choice is None or choice == LEAVE:
                    await self._leave()
                    return
                if choice not in offered:
                    problem = f"{choice or 'nothing'}: not a function of the {role} role."
                    continue
                problem = await self._functions()[offered[choice][0]]()
            except IdleTimeout:
                t.journal.record("supervisor_timeout", role=role, seconds=self.idle_timeout)
                log.info("supervisor mode left: no key for %.0f s", self.idle_timeout)
                await self._leave()
                return
            except DeviceError as exc:
                if exc.device == t.devices.pinpad.kind:
                    raise  # the PIN pad itself failed: no menu without it
                # another device (a jammed dispenser): the supervisor is there to see it
                log.warning("supervisor menu: %s", exc)
                t.journal.record("supervisor_device_error", error=str(exc), role=role)
                problem = f"{exc}."
            except AtmError as exc:  # refused by the role, the exchange or the host
                problem = f"{exc}."

    def _functions(self) -> dict[str, Callable[[], Coroutine[Any, Any, str]]]:
        return {
            "exchange": self._exchange,
            "balance_report": self._balance_report,
            "print_journal": self._print_journal,
            "diagnostics": self._diagnostics,
            "clear_fault": self._clear_fault,
            "load_paper": self._load_paper,
        }

    # -- the functions: each returns the line shown under the menu ---------------------------

    def _keep_counters(self) -> None:
        """From the first turn the dispenser answers: the counters follow its cassettes and
        the sessions book retracted notes in them (Terminal.cash_counters), so the first
        balancing already knows what sits in the retract bin."""
        try:
            self._configure_counters()
        except AtmError:
            return  # not open yet, or failing: the loop's next turn tries again
        self.terminal.cash_counters = self.console.counters

    def _configure_counters(self) -> None:
        """The counters follow the dispenser's cassettes; a cassette new to them starts
        from what the dispenser says it holds (their first exchange balances the rest)."""
        counters = self.console.counters
        cassettes = self.terminal.devices.dispenser.cassettes()
        known = set(counters.capacities())
        counters.configure([(c.index, c.denomination, self.capacity) for c in cassettes])
        counters.load({c.index: c.count for c in cassettes if c.index not in known})

    async def _exchange(self) -> str:
        self.console.mode.require("exchange")
        self._configure_counters()
        exchange, shown = await self.console.start_exchange()
        binned: set[int] = set()  # denominations whose bin notes are counted already
        for cassette in shown:
            bins = cassette.denomination not in binned
            binned.add(cassette.denomination)
            try:
                counted = await self._count_cassette(
                    exchange, cassette.position, cassette.denomination, bins=bins
                )
            except Stopped:  # the kiosk stops during the counts: nothing booked either
                self.terminal.journal.record(
                    "exchange_abandoned", cassette=cassette.position, reason="stop"
                )
                raise
            if not counted:
                self.terminal.journal.record("exchange_abandoned", cassette=cassette.position)
                return "Exchange cancelled: nothing was booked."
        _, self.last_report = await self.console.end_exchange(exchange, shown)
        await self._wait_enter()  # the report stays on the screen until ENTER
        return "Exchange done: the report is printed."

    async def _count_cassette(
        self, exchange: StorageExchange, position: int, denomination: int, *, bins: bool
    ) -> bool:
        """Ask the counts found in cassette ``position`` and then its load, each again while
        the exchange refuses it; False on CANCEL. ``bins``: also this denomination's notes
        in the reject and retract bins (else 0: another cassette of it counted them)."""
        values = {
            "cassette": str(position),
            "denomination": format_minor(denomination, self.terminal.config.currency),
        }
        problem = ""
        while True:
            found = []
            for what in (REMAINING, REJECT_BIN, RETRACT_BIN) if bins else (REMAINING,):
                count = await self._number(what, values, problem)
                if count is None:
                    return False
                problem = ""
                found.append(count)
            try:
                remaining, *in_bins = found
                rejected, retracted = in_bins or (0, 0)  # counted with another cassette
                exchange.set_found(position, denomination, remaining, rejected, retracted)
                break
            except SupervisorError as exc:
                problem = f"{exc}."
        while True:
            count = await self._number("notes loaded", values, problem)
            if count is None:
                return False
            try:
                exchange.set_load(position, denomination, count)
                return True
            except SupervisorError as exc:
                problem = f"{exc}."

    async def _number(self, what: str, values: dict[str, str], problem: str) -> int | None:
        while True:
            typed = await self._ask(
                Screen.SUPERVISOR_COUNT, COUNT_DIGITS, what=what, problem=problem, **values
            )
            if typed is None:
                return None
            if typed:
                return int(typed)
            problem = "Type the number of notes (0 for none)."

    async def _balance_report(self) -> str:
        self.console.mode.require("balance_report")
        if not self.last_report:
            return "No exchange yet in this visit: no report."
        self.terminal.display.show(Screen.SUPERVISOR_REPORT, report=" | ".join(self.last_report))
        self.console._print(self.last_report, "BALANCING REPORT")
        await self._wait_enter()
        return "Report shown again."

    async def _print_journal(self) -> str:
        lines = self.console.print_journal()
        if self.terminal.devices.printer is None:
            return "No printer attached: the journal was not printed."
        last = self.terminal.journal.tail(1)
        if last and last[0].event == "report_printed":
            return f"Journal printed ({len(lines)} lines)."
        return "The printer could not print the journal."

    async def _diagnostics(self) -> str:
        self.console.mode.require("diagnostics")
        return await self._show_status()

    async def _clear_fault(self) -> str:
        """Reopen every device in fault or offline, then check them all again."""
        self.console.mode.require("clear_fault")
        t = self.terminal
        drivers = t.devices.all()
        reopened = []
        for name, state in t.devices.status().items():
            if state in (DeviceStatus.FAULT, DeviceStatus.OFFLINE):
                try:
                    drivers[name].reopen()
                    reopened.append(name)
                except DeviceError as exc:
                    log.warning("clear faults: cannot reopen %s: %s", name, exc)
        t.check_devices()
        states = {k: v.value for k, v in t.devices.status().items()}
        t.journal.record("faults_cleared", reopened=reopened, devices=states)
        return await self._show_status()

    async def _load_paper(self) -> str:
        self.console.mode.require("load_paper")
        t = self.terminal
        printer = t.devices.printer
        if printer is None:
            return "No printer attached."
        state = printer.status()
        if state in (DeviceStatus.FAULT, DeviceStatus.OFFLINE):
            try:
                printer.reopen()
            except DeviceError as exc:
                log.warning("paper loaded: cannot reopen the printer: %s", exc)
            state = printer.status()
        t.journal.record("paper_loaded", printer=state.value)
        return f"Printer: {state.value}."

    # -- helpers -----------------------------------------------------------------------------

    async def _show_status(self) -> str:
        """The device status list on the screen, and to the host (0800/161)."""
        t = self.terminal
        _, devices = current_status(t)
        errors = {d["kind"]: d["error"] for d in devices}
        lines = []
        for entry in status_list(devices):
            line = f"{entry.kind}: {entry.state}"
            if entry.attention != "none":
                line += f", attention {entry.attention} ({entry.actor})"
            if errors.get(entry.kind):
                line += f", {errors[entry.kind]}"
            lines.append(line)
        try:
            response = await self.console.send_status(cash=cash_in_cassettes(t))
            told = response.get("39") == "00"
            lines.append("host told" if told else f"host refused: {response.get('39')}")
        except AtmError as exc:
            lines.append(f"host not told: {exc}")
        t.display.show(Screen.SUPERVISOR_STATUS, status=" | ".join(lines))
        await self._wait_enter()
        return ""

    async def _ask(self, screen: Screen, digits: int, **values: str) -> str | None:
        """Show ``screen`` and read digits + ENTER: the digits, None on CANCEL;
        :class:`IdleTimeout` when nothing comes for ``idle_timeout`` s, :class:`Stopped`
        as soon as the loop's stop is set (the read polls: polling.py)."""
        self.terminal.display.show(screen, **values)
        entry = await self._read(digits)
        return entry.keys if entry.outcome is EntryOutcome.ENTERED else None

    async def _wait_enter(self) -> None:
        """The screen shown stays until ENTER (or CANCEL)."""
        await self._read(1)

    async def _read(self, digits: int) -> KeyEntry:
        t = self.terminal
        entry = await read_keys(
            t.devices.pinpad, t.clock, max_digits=digits, timeout=self.idle_timeout, stop=self.stop
        )
        if entry.outcome is EntryOutcome.TIMEOUT:
            raise IdleTimeout
        return entry

    async def _leave(self, reason: str | None = None) -> None:
        t = self.terminal
        try:
            if self.console.mode.role is None and t.supervisor is not None:
                self.console.mode.role = t.supervisor
            await self.console.leave(reason=reason)
        except SupervisorError as exc:  # the host did not take the 0800/172: out anyway
            log.warning("supervisor mode left: %s", exc)
            t.supervisor = None
            t.check_devices()
        if t.state is not State.IDLE:
            t.display.show(Screen.OUT_OF_SERVICE)
