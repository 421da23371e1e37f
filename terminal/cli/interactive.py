"""``atm run --sim``: the terminal loop on simulated devices, the customer at a prompt.

Each session asks for a card (by PAN, from the config's test cards) and the customer's
inputs, loads them into the simulated devices, and runs the real session code against a
running ``atm host``. ``cardless`` at the card prompt starts a cardless withdrawal instead
(reserved beforehand with ``atm phone``). On real hardware the devices themselves are the
customer's input.

What is typed is checked at the prompt (a PAN of digits, an expiry YYMM, inputs it can
read) and asked again with the field named, so nothing malformed reaches the codec. Out of
service, the console says why and retries the devices and the host with the terminal's
backoff until they answer. Ctrl-C stops at once (exit code 130), end of input (Ctrl-D, the
end of a pipe) stops with a line (exit code 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from atm_common.clock import SystemClock
from atm_common.errors import AtmError, ConfigError
from terminal.app import Terminal
from terminal.cli.console import Console, Interrupted
from terminal.config import TerminalConfig, load_config
from terminal.drivers.camera.sim import SimCamera
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Keys, Pin, Signal, SimPinPad
from terminal.session import SessionResult
from terminal.ui import CallbackDisplay

log = logging.getLogger(__name__)

HELP = """Customer inputs, comma-separated, in order. Examples:
  pin 1234, F1, 100        PIN, cash withdrawal, 100 units
  pin 1234, F2, enter      PIN, balance, continue
  cancel | wait            press CANCEL | walk away (timeout)
Add 'leave cash' or 'leave card' to refuse to take them. Empty line at the card prompt quits.
'cardless' at the card prompt collects a reservation made with `atm phone`:
  4915100000006, F1, pin 123456   phone, F1 code (F2 face, F3 both), the code
  4915100000006, F2, face PHOTO   by face: the camera sees the person in PHOTO"""

CARDLESS = "cardless"
INTERRUPTED = 130  # the shell's code for a run stopped by SIGINT


def pan_problem(pan: str) -> str | None:
    """Why ``pan`` cannot be a card number (the PAN itself is never echoed), or None."""
    if not pan.isdigit():
        return "PAN: digits only, 12 to 19 of them"
    if not 12 <= len(pan) <= 19:
        return f"PAN: 12 to 19 digits, not {len(pan)}"
    return None


def expiry_problem(expiry: str) -> str | None:
    """Why ``expiry`` is not a card's YYMM (ISO 8583 field 14), or None."""
    if len(expiry) != 4 or not expiry.isdigit():
        return f"expiry: 4 digits YYMM (like 3012), not {expiry!r}"
    if not 1 <= int(expiry[2:]) <= 12:
        return f"expiry: the month (MM of YYMM) must be 01 to 12, not {expiry[2:]}"
    return None


def take_photo(text: str) -> tuple[str, str]:
    """``text`` without its ``face PHOTO`` entry, and that photo's path ("" if none)."""
    rest, photo = [], ""
    for part in text.split(","):
        if part.strip().lower().startswith("face "):
            photo = part.strip()[5:].strip()
        else:
            rest.append(part)
    return ",".join(rest), photo


def parse_inputs(text: str) -> tuple[list[Pin | Keys | Fkey | Signal], bool, bool]:
    entries: list[Pin | Keys | Fkey | Signal] = []
    take_cash = take_card = True
    for raw in (part.strip() for part in text.split(",")):
        word = raw.lower()
        if not word:
            continue
        if word.startswith("pin "):
            entries.append(Pin(raw[4:].strip()))
        elif word.upper() in {f"F{i}" for i in range(1, 9)}:
            entries.append(Fkey(word.upper()))
        elif word == "enter":
            entries.append(Keys(""))
        elif word == "cancel":
            entries.append(CANCEL)
        elif word == "wait":
            entries.append(NO_INPUT)
        elif word == "leave cash":
            take_cash = False
        elif word == "leave card":
            take_card = False
        elif word.isdigit():
            entries.append(Keys(word))
        else:
            raise ValueError(f"unknown input {raw!r}")
    return entries, take_cash, take_card


async def serve_prompted(
    terminal: Terminal, pan: str, expiry: str, text: str
) -> SessionResult | None:
    """One customer from the prompt: ``pan`` (or ``cardless``), ``expiry`` and the inputs.

    Raises :class:`ValueError` for inputs that cannot be understood, before anything is
    loaded into a device. Inputs and take/leave choices the session did not use are dropped
    afterwards, so they cannot leak into the next customer's session.
    """
    devices = terminal.devices
    reader, pinpad, dispenser = devices.card_reader, devices.pinpad, devices.dispenser
    assert isinstance(reader, SimCardReader) and isinstance(pinpad, SimPinPad)
    assert isinstance(dispenser, SimDispenser)
    text, photo = take_photo(text)
    entries, take_cash, take_card = parse_inputs(text)
    camera = devices.camera
    if photo and not isinstance(camera, SimCamera):
        raise ValueError("'face PHOTO' needs the sim camera ([devices.camera] backend = \"sim\")")
    card = None if pan.lower() == CARDLESS else CardData(pan=pan, expiry=expiry)
    if not await terminal.ready():
        return None  # an out-of-service kiosk takes no card (its shutter stays shut)
    if photo and isinstance(camera, SimCamera):
        try:
            camera.show_photo(photo)
        except ConfigError as exc:
            raise ValueError(f"face {photo}: {exc}") from None
    pinpad.script(*entries)
    if not take_cash:
        dispenser.script_take_cash(False)
    try:
        if card is None:
            return await terminal.serve_cardless()
        if not take_card:
            reader.script_take_card(False)
        reader.insert(card)
        return await terminal.serve_one()
    finally:
        pinpad.clear_script()
        dispenser.clear_take_script()
        reader.clear_take_script()
        if reader.card_present:  # no path should leave one; if one did, it is not taken
            with contextlib.suppress(AtmError):
                reader.retain()
        if photo and isinstance(camera, SimCamera):
            camera.show(None)  # the customer has gone


def with_host(config: TerminalConfig, address: str | None, port: int | None) -> TerminalConfig:
    """``atm run --host/--port``: the config's host link with another address or port."""
    host = config.host
    if address is not None:
        host = dataclasses.replace(host, address=address)
    if port is not None:
        host = dataclasses.replace(host, port=port)
    return dataclasses.replace(config, host=host)


async def run_kiosk(config: TerminalConfig) -> int:
    """The unattended loop on the configured devices until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    echo = CallbackDisplay(lambda t: print(f"[screen] {t}", flush=True))
    if config.kiosk is None:
        terminal = Terminal(config, clock=SystemClock(), display=echo)
        return await serve_until(terminal, stop)
    from terminal.kiosk.run import kiosk_screen

    with kiosk_screen(config.kiosk, echo=echo.show_text) as (display, server):
        print(f"customer screen on {server.url}", flush=True)
        terminal = Terminal(config, clock=SystemClock(), display=display)
        display.attach(terminal.devices.pinpad)
        return await serve_until(terminal, stop)


async def serve_until(terminal: Terminal, stop: asyncio.Event) -> int:
    """The kiosk loop, with the status reporter beside it (0800/161 to the host on every
    device or mode change and every ``[supervisor] status_interval`` s) and supervisor
    mode in it (F8 and the supervisor key at the idle screen, then the menu)."""
    from terminal.supervisor.desk import SupervisorDesk
    from terminal.supervisor.reporter import StatusReporter

    terminal.start()
    reporter = StatusReporter(terminal, terminal.config.supervisor.status_interval)
    reporting = asyncio.create_task(reporter.run(stop))
    desk = SupervisorDesk.for_kiosk(terminal)  # F8 + key, and the supervisor's menu
    desk.stop = stop  # a stop ends supervisor mode too (0800/172), within about a second
    try:
        await terminal.run(stop, between=desk)
    finally:
        stop.set()
        if terminal.supervisor is not None:  # the loop ended in supervisor mode: tell the host
            await desk.leave_for_stop()
        await reporting
        desk.close()
        await terminal.close()
    return 0


async def run_interactive(
    config_path: Path, *, sim: bool, address: str | None = None, port: int | None = None
) -> int:
    config = with_host(load_config(config_path), address, port)
    if not sim:
        return await run_kiosk(config)
    terminal = Terminal(
        config,
        clock=SystemClock(),
        display=CallbackDisplay(lambda t: print(f"  [screen] {t}", flush=True)),
    )
    devices = terminal.devices
    reader, pinpad, dispenser = devices.card_reader, devices.pinpad, devices.dispenser
    if not (
        isinstance(reader, SimCardReader)
        and isinstance(pinpad, SimPinPad)
        and isinstance(dispenser, SimDispenser)
    ):
        await terminal.close()
        print("--sim needs the sim backends for card reader, PIN pad and dispenser")
        return 2
    console = Console()
    try:
        return await prompt_loop(terminal, console)
    except Interrupted:
        print("\ninterrupted: terminal stopped", flush=True)
        return INTERRUPTED
    finally:
        console.close()
        await terminal.close()


async def ask_valid(console: Console, prompt: str, problem: Callable[[str], str | None]) -> str:
    """Ask until the answer passes ``problem``; :class:`EndOfInput` at the end of input."""
    while True:
        answer = await console.ask(prompt)
        if answer is None:
            raise EndOfInput
        why = problem(answer)
        if why is None:
            return answer
        console.say(f"  {why}; please type it again")


class EndOfInput(Exception):
    """Ctrl-D or the end of piped input: the run ends cleanly."""


def inputs_problem(text: str) -> str | None:
    try:
        parse_inputs(text)
    except ValueError as exc:
        return f"inputs: {exc}"
    return None


async def wait_in_service(terminal: Terminal, console: Console) -> None:
    """Until the terminal is in service: say why not, retry after the backoff pause."""
    was_out = False
    while not await console.wait_for(terminal.ready()):
        was_out = True
        delay = terminal.retry.next()
        console.say(
            f"  out of service: {terminal.out_of_service_reason}"
            f" (next try in {delay:.1f} s; Ctrl-C quits)"
        )
        await console.sleep(delay)
    if was_out:
        console.say("  back in service")


async def prompt_loop(terminal: Terminal, console: Console) -> int:
    """Customers from the prompt until an empty PAN or the end of input."""
    terminal.start()  # out of service is not the end: wait_in_service retries
    console.say(HELP)
    try:
        while True:
            await wait_in_service(terminal, console)
            pan = await ask_valid(
                console,
                "\ncard PAN (empty to quit)> ",
                lambda p: None if not p or p.lower() == CARDLESS else pan_problem(p),
            )
            if not pan:
                return 0
            expiry = ""
            if pan.lower() != CARDLESS:
                expiry = await ask_valid(console, "expiry YYMM> ", expiry_problem)
            text = await ask_valid(console, "inputs> ", inputs_problem)
            result = await serve_prompted(terminal, pan, expiry, text)
            if result is not None:
                console.say(f"  outcome: {result.outcome}; path: {' -> '.join(result.states)}")
            else:
                console.say(f"  no session: {terminal.out_of_service_reason or 'not ready'}")
            if console.interrupted.is_set():
                raise Interrupted
    except EndOfInput:
        console.say("\nend of input: terminal stopped")
        return 0
