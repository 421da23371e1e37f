"""The terminal application: config -> devices -> state machine -> host link, and the loop.

:class:`Terminal` owns the long-lived parts (devices, journal, host client, machine) and
runs one :class:`~terminal.session.CardSession` per card (or a
:class:`~terminal.session.CardlessSession` when one is chosen). It goes in service only
when the devices it cannot work without are healthy, and out of service cleanly (never
crashing) when one fails.

Nothing one customer or one device does stops the loop: a session that fails hands the card
back (or retains it), goes out of service with a reason (``devices: ...``, ``host: ...``,
``key: ...``, ``session: ...``) and lets crash recovery settle what the host is owed; the
loop then retries the devices and the host with a capped, jittered backoff
(:class:`~atm_common.backoff.Backoff`) and goes back in service by itself. A reason that
repeats is journalled once and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable

from atm_common.backoff import Backoff
from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError, SecurityError
from atm_common.files import private_database
from atm_common.ratelimit import RateLimitedLog
from atm_common.tls import client_context
from host_link.client import HostClient
from host_link.errors import CodecError, HostLinkError, MacError
from terminal.config import TRANSPORT_CHOICE, TerminalConfig
from terminal.counters import DurableStan
from terminal.devices import Devices, build_devices
from terminal.drivers.base import DeviceStatus
from terminal.drivers.card_reader.base import CardData
from terminal.errors import DeviceError
from terminal.fsm.customer import CustomerMachine, State
from terminal.journal import Journal
from terminal.link_security import PinPadAuthenticator, sign_on, with_ksn
from terminal.recovery import recover
from terminal.saf import SafQueue
from terminal.session import CardlessSession, CardSession, CustomerSession, SessionResult
from terminal.session.base import CassetteBooks
from terminal.ui import Display, RecordingDisplay, Screen, WatchedDisplay

log = logging.getLogger(__name__)

ESSENTIAL = ("card_reader", "pinpad", "dispenser")
NO_SUPERVISOR_CONSOLE = "not available at this machine"  # a supervisor card, no console
CARDLESS_KEY = "F4"  # the idle screen's "cardless withdrawal" (touch or the key beside it)
# Work the kiosk loop hands its turn to between customers, before it looks for one:
# supervisor mode at the kiosk (terminal/supervisor/desk.py, which imports this module, so
# the loop takes it as a callable). True when it used the turn: no customer this turn.
Between = Callable[["Terminal"], Awaitable[bool]]


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
        self._restarting = True  # the first recovery clears the card reader
        self._devices_open = False
        # Out of service: when to try the devices and the host again (the loop's pause),
        # and how often the same complaint may reach the log.
        self.retry = Backoff(base=1.0, cap=30.0, jitter=0.25)
        self._ratelog = RateLimitedLog(log, burst=3, window=60.0)
        self._journalled = float("-inf")  # when the last out_of_service row was written
        self._offline: set[str] = set()  # devices OFFLINE at the last check
        self.supervisor: str | None = None  # the role in supervisor mode: no customers
        # cassette counters since the last exchange (set by whoever keeps them: `atm run`,
        # the demo); sessions record retracted notes in them, balancing reads them
        self.cash_counters: CassetteBooks | None = None
        # a card under [supervisor] card_prefixes at the idle terminal goes here, never to a
        # customer session (set by terminal/supervisor/console.py, which imports this module)
        self.supervisor_card: Callable[[CardData], Awaitable[None]] | None = None
        self._between_failed: str | None = None  # the last error of the loop's `between`

    @property
    def state(self) -> State:
        return self.machine.state

    def start(self) -> bool:
        """Open the devices and go in service if the essential ones are healthy.

        False leaves the terminal out of service with :attr:`out_of_service_reason`; the
        loop (:meth:`run`, or the console's) retries later: a device that failed to open
        is opened again, nothing needs a restart.
        """
        if not self._open_devices():
            return False
        if not self._recover():
            return False
        return self.check_devices()

    def _open_devices(self) -> bool:
        """Open every device (again, after a failure: opening is idempotent per device)."""
        if self._devices_open:
            return True
        try:
            self.devices.open()
        except DeviceError as exc:
            self._out_of_service(f"devices: failed to open: {exc}")
            return False
        self._devices_open = True
        self.journal.record("terminal_start", terminal=self.config.terminal_id)
        return True

    @property
    def recovered(self) -> bool:
        """The last session before this start is settled (nobody is served until it is)."""
        return self._recovered

    def _recover(self) -> bool:
        """Settle a session a crash interrupted, before anyone else is served.

        At a restart, a card still in the reader belongs to a customer who is gone: it is
        retained. After a session that failed (its card already handed back) a card in the
        reader is the next customer's, and is served.
        """
        try:
            if self._restarting and self.devices.card_reader.wait_for_card(0.0):
                self.devices.card_reader.retain()
                self.journal.record("card_retained_at_restart", durable=True)
            self._restarting = False
        except DeviceError as exc:
            self._ratelog.log("recover", logging.ERROR, "cannot clear the card reader: %s", exc)
        try:
            result = recover(
                self.journal,
                self.saf,
                self.devices.dispenser,
                self.config,
                lambda m: with_ksn(self.host.stamp(m), self.devices.pinpad),
            )
        except DeviceError as exc:
            self._out_of_service(f"recovery: crash recovery needs the dispenser: {exc}")
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
        status = self._reopen_offline(self.devices.status())
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
            self._out_of_service(f"devices: not ready: {bad}")
            return False
        if self.security_mode is None:
            return True  # devices are fine; in service once signed on to the host
        if self.machine.state is State.OUT_OF_SERVICE and self.supervisor is None:
            self.machine.fire("go_in_service")
            self.journal.record("in_service", devices={k: v.value for k, v in status.items()})
            self.display.show(Screen.WELCOME)
        return True

    def _reopen_offline(self, status: dict[str, DeviceStatus]) -> dict[str, DeviceStatus]:
        """Reopen every device that reported OFFLINE at this check and the one before (its
        port gone: another try on the old handle would fail for ever; one missed answer is
        not worth a new handle); the status after. Failures are logged, rate-limited."""
        offline = {name for name, state in status.items() if state is DeviceStatus.OFFLINE}
        again, self._offline = offline & self._offline, offline
        if not again or not self._devices_open:
            return status
        for name in sorted(again):
            try:
                self.devices.all()[name].reopen()
                log.warning("%s was offline: reopened", name)
            except DeviceError as exc:
                self._ratelog.log(f"reopen:{name}", logging.ERROR, "cannot reopen %s", exc)
        return self.devices.status()

    def _out_of_service(self, reason: str) -> None:
        """Out of service for ``reason`` (``kind: detail``).

        Journalled and shown when the terminal goes out of service or the kind of reason
        changes (journalled again at most once a minute when only its words change); a
        retry that fails the same way again only logs, at a bounded rate, so a missing
        device or a wrong key cannot flood the journal or the log.
        """
        kind = reason.split(":", 1)[0]
        previous = self.out_of_service_reason.split(":", 1)[0]
        now = self.clock.monotonic()
        news = self.machine.state is not State.OUT_OF_SERVICE or kind != previous
        # the same kind in other words (another device down): worth a row, once a minute
        reworded = reason != self.out_of_service_reason and now - self._journalled >= 60.0
        self.out_of_service_reason = reason
        if self.machine.state is not State.OUT_OF_SERVICE:
            self.machine.fire("go_out_of_service")
        if news or reworded:
            self._journalled = now
            self.journal.record("out_of_service", reason=reason)
        if news:
            self.display.show(Screen.OUT_OF_SERVICE)
        self._ratelog.log(f"oos:{kind}", logging.ERROR, "out of service: %s", reason)

    async def ensure_signed_on(self) -> bool:
        """Sign on (with key exchange in TDES mode) once; out of service while it fails."""
        if self.security_mode is not None:
            return True
        try:
            self.security_mode = await sign_on(self.host, self.devices.pinpad)
        except (MacError, SecurityError) as exc:
            # The host refused our MAC, or its keys do not check: a wrong master key (or a
            # man in the middle). Retrying faster will not fix it: the loop backs off, and
            # the next try starts on a fresh connection (the host drops one that keeps
            # failing its MAC check, which would read as "host down").
            await self.host.close()
            self._out_of_service(f"key: sign-on refused, the keys do not match the host's: {exc}")
            return False
        except (HostLinkError, CodecError) as exc:
            self._out_of_service(f"host: cannot sign on to the host: {exc}")
            return False
        except DeviceError as exc:
            self._out_of_service(f"devices: PIN pad cannot sign on: {exc}")
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
            self._out_of_service(f"devices: {exc}")
            return None
        card = self._read_ahead()
        if card is not None and card.pan.startswith(self.config.supervisor.card_prefixes):
            await self._divert_supervisor_card(card)
            return None
        return await self._run(CardSession, card=card)

    def _read_ahead(self) -> CardData | None:
        """With ``[supervisor] card_prefixes``: the card, read before any session starts
        (by the reader call the session makes; the session then uses it), so a supervisor
        card starts none. None without prefixes, or when the card cannot be read: the
        session reads it again and tells the customer, as for any card."""
        if not self.config.supervisor.card_prefixes:
            return None
        try:
            return self.devices.card_reader.read_card()
        except DeviceError:
            return None

    async def _divert_supervisor_card(self, card: CardData) -> None:
        """A supervisor card at the idle terminal: the supervisor console takes it (PIN,
        0800/171, card back); without one it is refused and handed back."""
        entry = self.supervisor_card
        try:
            if entry is None:
                self.journal.record("supervisor_refused", pan=card.pan, reason="no console")
                self.display.show(Screen.SUPERVISOR_REFUSED, reason=NO_SUPERVISOR_CONSOLE)
            else:
                await entry(card)
        except Exception as exc:  # a supervisor card must not stop the kiosk either
            detail = str(exc) if isinstance(exc, AtmError) else f"{type(exc).__name__}: {exc}"
            self.journal.record("supervisor_refused", pan=card.pan, reason=detail)
        if self.supervisor is None:
            self._hand_back_card(None)  # only if it is still in the reader
            if self.machine.state is State.IDLE:
                self.display.show(Screen.WELCOME)

    async def serve_cardless(self) -> SessionResult | None:
        """A customer chose "cardless withdrawal" on the idle screen."""
        if not await self._ready():
            return None
        if not self.cash_available:
            return None
        return await self._run(CardlessSession)

    async def ready(self) -> bool:
        """Try to be in service now: open the devices, settle the last session, check the
        devices, sign on, drain the SAF. False leaves :attr:`out_of_service_reason`."""
        return await self._ready()

    def _screen_answers(self) -> bool:
        """A display that can stop answering (the kiosk page) still does."""
        return not isinstance(self.display, WatchedDisplay) or self.display.responsive()

    async def _ready(self) -> bool:
        if self.supervisor is not None:
            return False  # supervisor mode (terminal/supervisor/console.py): no customers
        if not self._screen_answers():
            if self.machine.state is State.IDLE:
                self._out_of_service("the customer screen does not answer")
            return False
        if not self._open_devices():
            return False
        if not self._recovered and not self._recover():
            return False  # in service only once the last session is settled
        if self.machine.state is State.OUT_OF_SERVICE and not self.check_devices():
            return False
        if not await self.ensure_signed_on():
            return False
        if self.saf.pending:
            await self.saf.drain(self.host)  # failures are counted in the queue, not raised
        ready = self.machine.state is State.IDLE
        if ready:
            self.retry.reset()
        return ready

    async def _run(
        self, kind: type[CustomerSession], card: CardData | None = None
    ) -> SessionResult | None:
        """``card``: already read (:meth:`_read_ahead`), so the session does not read again."""
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
            cash_counters=self.cash_counters,
        )
        if card is not None and isinstance(session, CardSession):
            session.card = card
        try:
            result = await session.run()
        except DeviceError as exc:
            self._session_failed(session_id, f"devices: {exc}", session)
            return None
        except Exception as exc:  # one customer must not stop the kiosk
            # A defect or an input no rule foresaw: stop serving rather than guess, and
            # come back once recovery has settled the session (the next try).
            log.debug("session %s failed", session_id, exc_info=True)
            detail = str(exc) if isinstance(exc, AtmError) else f"{type(exc).__name__}: {exc}"
            self._session_failed(session_id, f"session: failed: {detail}", session)
            return None
        if result.outcome == "host_unavailable":
            self.security_mode = None  # the host may have lost our keys: sign on afresh
        self.check_devices()
        return result

    def _session_failed(self, session_id: str, reason: str, session: CustomerSession) -> None:
        """End a session that raised: out of service, the card back to the customer (or
        retained), and the journal's word on what the host is owed settled before the next
        customer (crash recovery runs again, as after a restart)."""
        session.forget_pin()
        self.journal.record("session_failed", session_id, durable=True, reason=reason)
        self._out_of_service(reason)
        if isinstance(session, CardSession):
            self._hand_back_card(session_id)
        self._recovered = False

    def _hand_back_card(self, session_id: str | None) -> None:
        """The customer is still there: eject the card; retain it if not taken or stuck."""
        reader = self.devices.card_reader
        try:
            if not reader.wait_for_card(0.0):
                return
            if reader.eject(self.config.timeouts.take_card):
                self.journal.record("card_returned", session_id)
                return
        except DeviceError as exc:
            log.error("session %s: cannot eject the card: %s", session_id, exc)
        try:
            reader.retain()
            self.journal.record("card_retained", session_id, durable=True)
        except AtmError as exc:
            log.error("session %s: cannot retain the card: %s", session_id, exc)

    async def pause(self, stop: asyncio.Event) -> float:
        """Out of service: wait the next backoff delay (or until ``stop``); the delay."""
        delay = self.retry.next()
        self._ratelog.log(
            "retry",
            logging.WARNING,
            "out of service (%s): next try in %.1f s",
            self.out_of_service_reason,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        return delay

    async def run(
        self, stop: asyncio.Event, poll: float = 0.5, between: Between | None = None
    ) -> None:
        """The kiosk loop: serve customers until ``stop`` is set; out of service, retry
        the devices and the host after a backoff pause, and serve again once they answer.
        ``between`` (supervisor mode) gets the first word on every turn."""
        while not stop.is_set():
            if between is not None and await self._between(between):
                continue
            if self._cardless_chosen():
                result = await self.serve_cardless()
            else:
                result = await self.serve_one(wait=poll)
            if result is not None:
                log.info("session %s: %s", result.session_id, result.outcome)
                if self.machine.state is State.IDLE:
                    self.display.show(Screen.WELCOME)  # ready for the next customer
            elif self.machine.state is State.OUT_OF_SERVICE:
                await self.pause(stop)
            else:
                await asyncio.sleep(0.05)  # no card: yield to the host link and the stop event

    async def _between(self, between: Between) -> bool:
        """``between``'s turn; one that raises never stops the kiosk: logged (at a bounded
        rate), journaled (once per distinct error), and the turn goes on to the customers
        (the out-of-service pause paces the retries)."""
        try:
            return await between(self)
        except Exception as exc:
            detail = str(exc) if isinstance(exc, AtmError) else f"{type(exc).__name__}: {exc}"
            log.debug("between customers: failed", exc_info=True)
            self._ratelog.log("between", logging.ERROR, "between customers: %s", detail)
            if detail != self._between_failed:
                self._between_failed = detail
                self.journal.record("between_failed", error=detail)
            return False

    def _cardless_chosen(self) -> bool:
        """The idle screen's cardless key is waiting (not consumed unless it is that key)."""
        if self.machine.state is not State.IDLE or self.supervisor is not None:
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
