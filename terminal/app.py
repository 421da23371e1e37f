"""The terminal application: config -> devices -> state machine -> host link, and the loop.

:class:`Terminal` owns the long-lived parts (devices, journal, host client, machine) and
runs one :class:`~terminal.session.CardSession` per card (or a
:class:`~terminal.session.CardlessSession` when one is chosen). It goes in service only
when the devices it cannot work without are healthy, and out of service cleanly (never
crashing) when one fails.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError, SecurityError
from atm_common.files import private_database
from atm_common.tls import client_context
from host_link.client import HostClient
from host_link.errors import CodecError, HostLinkError
from terminal.config import TRANSPORT_CHOICE, TerminalConfig
from terminal.counters import DurableStan
from terminal.devices import Devices, build_devices
from terminal.drivers.base import DeviceStatus
from terminal.errors import DeviceError
from terminal.fsm.customer import CustomerMachine, State
from terminal.journal import Journal
from terminal.link_security import PinPadAuthenticator, sign_on, with_ksn
from terminal.recovery import recover
from terminal.saf import SafQueue
from terminal.session import CardlessSession, CardSession, CustomerSession, SessionResult
from terminal.ui import Display, RecordingDisplay, Screen, WatchedDisplay

log = logging.getLogger(__name__)

ESSENTIAL = ("card_reader", "pinpad", "dispenser")
CARDLESS_KEY = "F4"  # the idle screen's "cardless withdrawal" (touch or the key beside it)


def link_context(config: TerminalConfig) -> ssl.SSLContext | None:
    """The host link's TLS context (the terminal's certificate, the bank's CA); None only
    for a config that says ``plain``. Missing files are a ConfigError naming the key."""
    host = config.host
    if host.tls is not None:
        return client_context(host.tls, source=config.source, key="host.tls")
    if not host.plain:
        raise ConfigError(config.source, "host", TRANSPORT_CHOICE)
    return None


class Terminal:
    def __init__(
        self,
        config: TerminalConfig,
        *,
        clock: Clock | None = None,
        devices: Devices | None = None,
        display: Display | None = None,
        journal: Journal | None = None,
    ) -> None:
        link = link_context(config)  # first: a bad config opens nothing
        self.config = config
        self.clock = clock or SystemClock()
        self.devices = devices or build_devices(config, self.clock)
        self.display = display or RecordingDisplay()
        self.journal = journal or Journal(config.journal, self.clock)
        saf_path = config.journal.with_name(config.journal.stem + "-saf.db")
        private_database(saf_path)  # made private here: the queue itself only opens it
        self.saf = SafQueue(saf_path, self.clock)
        self.stan = DurableStan(config.journal.with_name(config.journal.stem + "-counters.db"))
        self.host = HostClient(
            config.host.address,
            config.host.port,
            terminal_id=config.terminal_id,
            clock=self.clock,
            timeout=config.host.timeout,
            connect_timeout=config.host.connect_timeout,
            authenticator=PinPadAuthenticator(self.devices.pinpad),
            stan=self.stan,
            ssl=link,
            server_hostname=config.host.server_name or None,
        )
        self.security_mode: str | None = None  # set by sign-on
        self.cash_available = True
        self.machine = CustomerMachine()
        last, _ = self.journal.last_session()
        first = int(last.rsplit("-", 1)[1]) + 1 if last and last.rsplit("-", 1)[1].isdigit() else 1
        self._sessions = itertools.count(first)
        self.out_of_service_reason = "starting"
        self._recovered = False

    @property
    def state(self) -> State:
        return self.machine.state

    def start(self) -> bool:
        """Open the devices and go in service if the essential ones are healthy."""
        try:
            self.devices.open()
        except DeviceError as exc:
            self._out_of_service(f"device failed to open: {exc}")
            return False
        self.journal.record("terminal_start", terminal=self.config.terminal_id)
        if not self._recover():
            return False
        return self.check_devices()

    @property
    def recovered(self) -> bool:
        """The last session before this start is settled (nobody is served until it is)."""
        return self._recovered

    def _recover(self) -> bool:
        """Settle a session a crash interrupted, before anyone else is served.

        A card still in the reader belongs to a customer who is gone: it is retained.
        """
        try:
            if self.devices.card_reader.wait_for_card(0.0):
                self.devices.card_reader.retain()
                self.journal.record("card_retained_at_restart", durable=True)
        except DeviceError as exc:
            log.error("cannot clear the card reader at restart: %s", exc)
        try:
            result = recover(
                self.journal,
                self.saf,
                self.devices.dispenser,
                self.config,
                lambda m: with_ksn(self.host.stamp(m), self.devices.pinpad),
            )
        except DeviceError as exc:
            self._out_of_service(f"crash recovery needs the dispenser: {exc}")
            return False
        if result.action != "clean":
            log.warning("recovery of %s: %s", result.session, result.action)
        self._recovered = True
        return True

    def check_devices(self) -> bool:
        """Re-check device health; move in or out of service accordingly.

        Card reader and PIN pad are essential. Without a working dispenser the terminal
        offers balance inquiries only (or goes out of service, by config), and offers cash
        again as soon as the dispenser reports healthy: no restart needed.
        """
        status = self.devices.status()
        down = (DeviceStatus.FAULT, DeviceStatus.OFFLINE)
        cash = status.get("dispenser") not in down
        if cash != self.cash_available:
            self.cash_available = cash
            self.journal.record("cash_service", available=cash, dispenser=status["dispenser"].value)
            log.warning("cash withdrawal %s", "available again" if cash else "unavailable")
        essential = (
            ESSENTIAL
            if self.config.without_dispenser == "out_of_service"
            else ("card_reader", "pinpad")
        )
        bad = {k: v.value for k, v in status.items() if k in essential and v in down}
        if bad:
            self._out_of_service(f"devices not ready: {bad}")
            return False
        if self.security_mode is None:
            return True  # devices are fine; in service once signed on to the host
        if self.machine.state is State.OUT_OF_SERVICE:
            self.machine.fire("go_in_service")
            self.journal.record("in_service", devices={k: v.value for k, v in status.items()})
            self.display.show(Screen.WELCOME)
        return True

    def _out_of_service(self, reason: str) -> None:
        self.out_of_service_reason = reason
        if self.machine.state is not State.OUT_OF_SERVICE:
            self.machine.fire("go_out_of_service")
        self.journal.record("out_of_service", reason=reason)
        self.display.show(Screen.OUT_OF_SERVICE)
        log.error("out of service: %s", reason)

    async def ensure_signed_on(self) -> bool:
        """Sign on (with key exchange in TDES mode) once; out of service while it fails."""
        if self.security_mode is not None:
            return True
        try:
            self.security_mode = await sign_on(self.host, self.devices.pinpad)
        except (HostLinkError, SecurityError, CodecError) as exc:
            self._out_of_service(f"cannot sign on to the host: {exc}")
            return False
        except DeviceError as exc:
            self._out_of_service(f"PIN pad cannot sign on: {exc}")
            return False
        self.journal.record("signed_on", security=self.security_mode)
        self.check_devices()
        return True

    async def serve_one(self, wait: float | None = 0.0) -> SessionResult | None:
        """Wait up to ``wait`` seconds for a card and run that customer's session."""
        if not await self._ready():
            return None
        try:
            if not self.devices.card_reader.wait_for_card(wait):
                return None
        except DeviceError as exc:
            self._out_of_service(f"device error: {exc}")
            return None
        return await self._run(CardSession)

    async def serve_cardless(self) -> SessionResult | None:
        """A customer chose "cardless withdrawal" on the idle screen."""
        if not await self._ready():
            return None
        if not self.cash_available:
            return None
        return await self._run(CardlessSession)

    def _screen_answers(self) -> bool:
        """A display that can stop answering (the kiosk page) still does."""
        return not isinstance(self.display, WatchedDisplay) or self.display.responsive()

    async def _ready(self) -> bool:
        if not self._screen_answers():
            if self.machine.state is State.IDLE:
                self._out_of_service("the customer screen does not answer")
            return False
        if not self._recovered and not self._recover():
            return False  # in service only once the last session is settled
        if self.machine.state is State.OUT_OF_SERVICE and not self.check_devices():
            return False
        if not await self.ensure_signed_on():
            return False
        if self.saf.pending:
            await self.saf.drain(self.host)  # failures are counted in the queue, not raised
        return self.machine.state is State.IDLE

    async def _run(self, kind: type[CustomerSession]) -> SessionResult | None:
        session_id = f"{self.config.terminal_id}-{next(self._sessions):06d}"
        session = kind(
            session_id,
            self.config,
            self.devices,
            self.host,
            self.journal,
            self.display,
            self.machine,
            self.saf,
            cash_available=self.cash_available,
        )
        try:
            result = await session.run()
        except DeviceError as exc:
            self._out_of_service(f"device error: {exc}")
            return None
        except AtmError as exc:
            # A defect or an input no rule foresaw: stop serving rather than guess.
            log.exception("session failed")
            self._out_of_service(f"session failed: {exc}")
            return None
        if result.outcome == "host_unavailable":
            self.security_mode = None  # the host may have lost our keys: sign on afresh
        self.check_devices()
        return result

    async def run(self, stop: asyncio.Event, poll: float = 0.5) -> None:
        """The kiosk loop: serve customers until ``stop`` is set."""
        while not stop.is_set():
            if self._cardless_chosen():
                result = await self.serve_cardless()
            else:
                result = await self.serve_one(wait=poll)
            if result is None:
                await asyncio.sleep(0.05)  # no card: yield to the host link and the stop event
            else:
                log.info("session %s: %s", result.session_id, result.outcome)
                if self.machine.state is State.IDLE:
                    self.display.show(Screen.WELCOME)  # the next customer's first screen

    def _cardless_chosen(self) -> bool:
        """The idle screen's cardless key is waiting (not consumed unless it is that key)."""
        if self.machine.state is not State.IDLE:
            return False
        try:
            if self.devices.pinpad.key_pending() != CARDLESS_KEY:
                return False
            self.devices.pinpad.discard_pending_key()
        except DeviceError as exc:
            self._out_of_service(f"device error: {exc}")
            return False
        return True

    async def close(self) -> None:
        await self.host.close()
        self.saf.close()
        self.stan.close()
        self.devices.close()
        self.journal.record("terminal_stop")
        self.journal.close()
