"""A man in the middle cannot make the terminal accept an answer meant for another message.

The attack, as found against real ``atm host`` processes: the attacker forwards the
terminal's genuine 0200 (the host approves and debits), drops the genuine 0210, and hands
the terminal the response code 63 the host gave an altered copy of the same request on a
connection of the attacker's own. Before the fix that 63 was MACed under the terminal's
key, so the terminal took it as "the host did nothing": no cash, no reversal, the account
stayed debited. The same with a 30 obtained for a damaged copy of the terminal's 0400,
which made the terminal give its reversal up.

Here the host is a real process, the attacker a real TCP proxy, and each test checks
the customer's account at the end: it must be whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path

from atm_common.clock import ManualClock
from host_link.codec import decode
from host_link.framing import FrameDecoder, frame
from sim.host.ledger import balance_of
from sim.scenarios.demo import DEMO_SEED, demo_terminal, seed_cards, sim_customer
from sim.scenarios.scripts import WITHDRAW, Scenario, apply
from sim.services import ServiceProcess, service_process
from terminal.app import Terminal
from terminal.drivers.pinpad.sim import Keys, Pin

ALICE = "1000000001"


def flip_before_mac(body: bytes) -> bytes:
    """The last byte before the MAC: the copy still decodes, only its MAC fails (63)."""
    damaged = bytearray(body)
    damaged[-17] ^= 0x01
    return bytes(damaged)


def cut_after_terminal_id(body: bytes) -> bytes:
    """MTI, bitmap, STAN and terminal id readable, the rest cut off (30)."""
    terminal_id = decode(body)["41"].encode()
    return body[: body.index(terminal_id) + len(terminal_id) + 3]


class AnswerSwappingProxy:
    """Between terminal and host. For the first terminal frame whose MTI is ``mti`` it
    sends ``damage(frame)`` to the host on a connection of its own, keeps that answer, and
    hands it to the terminal in place of the genuine one (which it drops). The genuine
    request reaches the host only when ``forward_genuine``."""

    def __init__(
        self, host_port: int, mti: bytes, damage: Callable[[bytes], bytes], forward_genuine: bool
    ) -> None:
        self.host_port, self.mti, self.damage = host_port, mti, damage
        self.forward_genuine = forward_genuine
        self.armed = False
        self.swapped: dict[str, str] | None = None  # the forged answer as handed over
        self._forged: bytes | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _forge(self, body: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.host_port)
        writer.write(frame(self.damage(body)))
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        answer = await reader.readexactly(size)
        writer.close()
        return answer

    async def _client(self, t_reader: asyncio.StreamReader, t_writer: asyncio.StreamWriter) -> None:
        h_reader, h_writer = await asyncio.open_connection("127.0.0.1", self.host_port)

        async def upstream() -> None:
            decoder = FrameDecoder()
            while data := await t_reader.read(65536):
                for body in decoder.feed(data):
                    if self.armed and self._forged is None and body.startswith(self.mti):
                        self._forged = await self._forge(body)
                        self.swapped = decode(self._forged)
                        if not self.forward_genuine:
                            t_writer.write(frame(self._forged))  # the genuine never arrives
                            await t_writer.drain()
                            continue
                    h_writer.write(frame(body))
                    await h_writer.drain()

        async def downstream() -> None:
            decoder = FrameDecoder()
            answer = self.mti[:2] + bytes([self.mti[2] + 1]) + b"0"
            while data := await h_reader.read(65536):
                for body in decoder.feed(data):
                    if self._forged is not None and self.forward_genuine and body[:4] == answer:
                        body, self._forged = self._forged, b""  # drop the genuine answer
                    t_writer.write(frame(body))
                    await t_writer.drain()

        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await asyncio.gather(upstream(), downstream())
        for writer in (h_writer, t_writer):
            writer.close()


def ledger_balance(db: Path, account: str) -> int:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account,)).fetchone()
        return balance_of(row).ledger
    finally:
        conn.close()


async def withdraw_through(
    tmp_path: Path, proxy: AnswerSwappingProxy, port: int, *, take_cash: bool
) -> tuple[Terminal, str]:
    terminal = demo_terminal(
        tmp_path, port, DEMO_SEED, ManualClock(dt.datetime.now(dt.UTC)), tls=None
    )
    assert terminal.start()
    assert await terminal.ensure_signed_on(), terminal.out_of_service_reason
    proxy.armed = True
    card, _ = seed_cards(DEMO_SEED)["ALICE ARDEN"]
    scenario = Scenario(
        "mitm", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "", take_cash=take_cash
    )
    apply(scenario, sim_customer(terminal), card)
    result = await terminal.serve_one()
    assert result is not None
    return terminal, result.outcome


def host(tmp_path: Path) -> contextlib.AbstractContextManager[ServiceProcess]:
    """The demo bank in its own process, without sampled snapshot uploads: an upload at a
    session's end drains the SAF, which would hide what these tests look at."""
    seed = tmp_path / "seed.toml"
    seed.write_text(DEMO_SEED.read_text().replace("[host]\n", "[host]\nevidence_sample = 0.0\n", 1))
    return service_process(
        "host", ["--db", str(tmp_path / "host.db"), "--seed", str(seed), "--demo", "--plain"]
    )


def test_a_signed_63_for_an_altered_copy_does_not_hide_an_approval(tmp_path: Path) -> None:
    with host(tmp_path) as service:
        before = ledger_balance(tmp_path / "host.db", ALICE)

        async def attack() -> str:
            proxy = AnswerSwappingProxy(
                service.port,
                b"0200",
                flip_before_mac,
                forward_genuine=True,
            )
            port = await proxy.start()
            terminal, outcome = await withdraw_through(tmp_path, proxy, port, take_cash=True)
            assert proxy.swapped is not None and proxy.swapped["39"] == "63"
            await terminal.close()
            await proxy.stop()
            return outcome

        outcome = asyncio.run(attack())
        # The host approved and debited the genuine request; the terminal saw no answer it
        # could trust, so it paid nothing and reversed.
        assert outcome == "host_unavailable"
        assert ledger_balance(tmp_path / "host.db", ALICE) == before


def test_a_30_for_a_damaged_copy_does_not_end_a_reversal(tmp_path: Path) -> None:
    with host(tmp_path) as service:
        before = ledger_balance(tmp_path / "host.db", ALICE)

        async def attack() -> tuple[str, int, int]:
            proxy = AnswerSwappingProxy(
                service.port,
                b"0400",
                cut_after_terminal_id,
                forward_genuine=False,
            )
            port = await proxy.start()
            # Cash not taken: retracted, and the 0400 is where the attacker strikes.
            terminal, outcome = await withdraw_through(tmp_path, proxy, port, take_cash=False)
            assert proxy.swapped is not None and proxy.swapped["39"] == "30"
            pending = terminal.saf.pending
            # The attacker leaves; the terminal's next drain delivers the reversal.
            proxy.armed = False
            delivered = await terminal.saf.drain(terminal.host, force=True)
            await terminal.close()
            await proxy.stop()
            return outcome, pending, delivered

        outcome, pending, delivered = asyncio.run(attack())
        assert outcome == "cash_retracted"
        assert pending == 1  # the forged 30 was not taken as the host's last word
        assert delivered == 1
        assert ledger_balance(tmp_path / "host.db", ALICE) == before
