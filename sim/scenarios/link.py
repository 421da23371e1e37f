"""A terminal's host link without the rest of the terminal, for tests, captures and
benchmarks: a simulated PIN pad holding the terminal's keys (from the seed), a MACing
:class:`HostClient`, and sign-on. Requests built with it are exactly what a real
terminal sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from ssl import SSLContext

from atm_common.clock import Clock, SystemClock
from host_link.client import HostClient, StanSequence
from host_link.codec import Message
from sim.devices.key_injection import pinpad_options
from terminal.drivers.pinpad.sim import Pin, SimPinPad
from terminal.link_security import PinPadAuthenticator, sign_on, with_ksn


class TerminalLink:
    def __init__(
        self,
        seed: Path,
        terminal_id: str,
        port: int,
        *,
        host: str = "127.0.0.1",
        clock: Clock | None = None,
        timeout: float = 10.0,
        stan: StanSequence | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.pinpad = SimPinPad(self.clock, **pinpad_options(seed, terminal_id))
        self.pinpad.open()
        self.client = HostClient(
            host,
            port,
            terminal_id=terminal_id,
            clock=self.clock,
            timeout=timeout,
            stan=stan,
            authenticator=PinPadAuthenticator(self.pinpad),
            ssl=ssl,
        )
        self.security = ""

    async def sign_on(self) -> str:
        self.security = await sign_on(self.client, self.pinpad)
        return self.security

    def pin_fields(self, pin: str, pan: str) -> Message:
        """Field 52 or 110 (and 53 for DUKPT) for ``pin`` typed on this terminal's pad."""
        self.pinpad.script(Pin(pin))
        entry = self.pinpad.read_pin(pan)
        fields = {"52" if len(entry.block) == 8 else "110": entry.block.hex().upper()}
        if entry.ksn:
            fields["53"] = entry.ksn
        return fields

    def prepare(self, message: Mapping[str, str]) -> Message:
        """Stamp (STAN, times, terminal id) and, for DUKPT, give it a KSN."""
        return with_ksn(self.client.stamp(message), self.pinpad)

    async def request(self, message: Mapping[str, str]) -> Message:
        return await self.client.request(self.prepare(message))

    async def close(self) -> None:
        await self.client.close()
        self.pinpad.close()
