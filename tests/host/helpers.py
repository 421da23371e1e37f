"""Shared builders for host tests: a seeded host and terminals that build real requests.

Requests are built the way the terminal builds them (:mod:`terminal.transactions`),
stamped the way :class:`~host_link.client.HostClient` stamps them. A TDES terminal first
runs the key exchange (0800, field 70 = 101): its PIN blocks are ISO 9564 format 0 under
the TPK the host sent, decrypted with the TMK from the seed. An AES DUKPT terminal
builds format 4 blocks with a PIN pad key store holding its initial key.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, ManualClock
from atm_common.crypto.pinblock import encrypt_format0
from atm_common.crypto.tdes import decrypt_block
from host_link.amounts import AmountType, decode_amounts
from host_link.client import HostClient, StanSequence
from host_link.codec import Message
from host_link.connection import Connection
from sim.devices.key_injection import pinpad_options
from sim.host import db
from sim.host.authoriser import Authoriser
from sim.host.ledger import Ledger
from sim.host.seed import load_seed
from sim.host.settings import HostKeys, HostSettings
from sim.scenarios.link import TerminalLink
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData
from terminal.link_security import PinPadAuthenticator
from terminal.security.pinpad_keys import PinPadKeys

DEMO_SEED = Path(__file__).resolve().parents[2] / "sim" / "data" / "demo-seed.toml"
TDES_TERMINAL, DUKPT_TERMINAL = "ATM00001", "ATM00002"


def demo_seed_data() -> dict[str, Any]:
    with DEMO_SEED.open("rb") as f:
        return tomllib.load(f)


def seed_terminals(seed: Path = DEMO_SEED) -> dict[str, dict[str, Any]]:
    with seed.open("rb") as f:
        return {t["id"]: t for t in tomllib.load(f)["terminals"]}


def seed_with_terminals(path: Path, ids: list[str]) -> Path:
    """The demo seed plus more TDES terminals (one key set per terminal, as in real life)."""
    extra = "".join(
        f'\n[[terminals]]\nid = "{tid}"\ncash = 1_000_000\nsecurity = "tdes"\n'
        f'tmk = "{f"{i + 1:02X}" * 8}{"5A" * 8}"\n'
        for i, tid in enumerate(ids)
    )
    text = DEMO_SEED.read_text()
    at = text.index("[[persons]]")
    path.write_text(text[:at] + extra + "\n" + text[at:])
    return path


@dataclasses.dataclass(frozen=True)
class Card:
    pan: str
    pin: str
    expiry: str
    account: str
    daily_limit: int


def demo_cards() -> dict[str, Card]:
    """Demo cards by owner name (``dave_expired`` for the expired one)."""
    out: dict[str, Card] = {}
    for c in demo_seed_data()["cards"]:
        name = c["owner"] if c["owner"] not in out else f"{c['owner']}_expired"
        out[name] = Card(c["pan"], c["pin"], c["expiry"], c["accounts"][0], c["daily_limit"])
    return out


CARDS = demo_cards()
ALICE, BOB, CAROL, DAVE = CARDS["alice"], CARDS["bob"], CARDS["carol"], CARDS["dave"]
DAVE_EXPIRED = CARDS["dave_expired"]


def card_data(card: Card, expiry: str | None = None) -> CardData:
    exp = expiry or card.expiry
    return CardData(pan=card.pan, expiry=exp, track2=f"{card.pan}={exp}1010000000000")


def parse_key_exchange(response: Mapping[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in response["63"].split(";") if item)


@dataclasses.dataclass
class Host:
    conn: sqlite3.Connection
    keys: HostKeys
    settings: HostSettings
    clock: ManualClock
    authoriser: Authoriser
    path: Path | str  # an SQLite file or a PostgreSQL URL

    @property
    def ledger(self) -> Ledger:
        return self.authoriser.ledger

    def balance(self, account: str) -> int:
        return self.ledger.balance(account).ledger

    def available(self, account: str) -> int:
        return self.ledger.balance(account).available

    def card_row(self, pan: str) -> sqlite3.Row:
        row: sqlite3.Row = self.conn.execute(
            "SELECT * FROM cards WHERE pan_ref = ?", (self.keys.pan_ref(pan),)
        ).fetchone()
        assert row is not None
        return row

    def count(self, table: str, where: str = "TRUE", *args: object) -> int:
        (n,) = self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", args).fetchone()
        return int(n)


def open_host(path: Path | str, clock: ManualClock | None = None, seed: Path = DEMO_SEED) -> Host:
    clock = clock or ManualClock()
    conn = db.connect(path)
    keys, settings = load_seed(conn, seed, Ledger(conn, clock))
    return Host(conn, keys, settings, clock, Authoriser(conn, keys, settings, clock), path)


class Terminal:
    """Builds stamped requests as terminal ``terminal_id`` would send them (no MAC)."""

    def __init__(
        self, clock: ManualClock, terminal_id: str = TDES_TERMINAL, seed: Path = DEMO_SEED
    ) -> None:
        self.terminal_id = terminal_id
        self.config = TerminalConfig(terminal_id=terminal_id)
        term = seed_terminals(seed)[terminal_id]
        self.security = term.get("security", "tdes")
        self.tmk = bytes.fromhex(term["tmk"]) if self.security == "tdes" else b""
        self.pad = PinPadKeys(**pinpad_options(seed, terminal_id))
        self.tpk: bytes | None = None
        self.client = HostClient("127.0.0.1", 1, terminal_id=terminal_id, clock=clock)

    @property
    def stan(self) -> StanSequence:
        return self.client.stan

    def key_exchange(self, host: Host) -> Message:
        """0800/101 through the host; installs the TPK it returns (decrypted with the TMK)."""
        response = host.authoriser.handle(self.client.stamp({"t": "0800", "70": "101"}))
        assert response is not None and response["39"] == "00", response
        keys = parse_key_exchange(response)
        self.pad.install_working_keys(keys["TPK"], keys["TAK"])
        self.tpk = decrypt_block(self.tmk, bytes.fromhex(keys["TPK"]))
        return response

    def pin_block(self, card: Card, pin: str | None = None) -> tuple[bytes, str]:
        """(block, KSN): format 0 under the TPK, or format 4 from the DUKPT pad."""
        if self.security == "tdes":
            assert self.tpk is not None, "key exchange first"
            return encrypt_format0(pin or card.pin, card.pan, self.tpk), ""
        block, _, ksn = self.pad.pin_block(pin or card.pin, card.pan)
        return block, ksn

    def balance_inquiry(self, card: Card, pin: str | None = None, **over: str) -> Message:
        block, ksn = self.pin_block(card, pin)
        msg = transactions.balance_inquiry(self.config, card_data(card), block, ksn)
        return self.client.stamp({**msg, **over})

    def withdrawal(self, card: Card, amount: int, pin: str | None = None, **over: str) -> Message:
        block, ksn = self.pin_block(card, pin)
        msg = transactions.withdrawal(self.config, card_data(card), block, amount, ksn)
        return self.client.stamp({**msg, **over})

    def reversal(self, original: Mapping[str, str], dispensed: int = 0, **over: str) -> Message:
        msg = transactions.reversal(self.config, original, dispensed)
        return self.client.stamp({**msg, **over})

    def echo(self) -> Message:
        return self.client.stamp({"t": "0800", "70": "301"})


class LinkTerminal:
    """A terminal's real host link (MACing client + simulated PIN pad) for TCP tests."""

    def __init__(
        self,
        port: int,
        clock: Clock,
        terminal_id: str = TDES_TERMINAL,
        seed: Path = DEMO_SEED,
        timeout: float = 5.0,
    ) -> None:
        self.link = TerminalLink(seed, terminal_id, port, clock=clock, timeout=timeout)
        self.config = TerminalConfig(terminal_id=terminal_id)

    @property
    def client(self) -> HostClient:
        return self.link.client

    async def sign_on(self) -> str:
        return await self.link.sign_on()

    def _pin(self, card: Card, pin: str | None) -> tuple[bytes, str]:
        fields = self.link.pin_fields(pin or card.pin, card.pan)
        return bytes.fromhex(fields.get("52") or fields["110"]), fields.get("53", "")

    def withdrawal(self, card: Card, amount: int, pin: str | None = None) -> Message:
        block, ksn = self._pin(card, pin)
        msg = transactions.withdrawal(self.config, card_data(card), block, amount, ksn)
        return self.link.prepare(msg)

    def balance_inquiry(self, card: Card, pin: str | None = None) -> Message:
        block, ksn = self._pin(card, pin)
        return self.link.prepare(
            transactions.balance_inquiry(self.config, card_data(card), block, ksn)
        )

    def echo(self) -> Message:
        return self.link.prepare({"t": "0800", "70": "301"})

    def signed(self, message: Mapping[str, str]) -> bytes:
        """``message`` framed and MACed exactly as this terminal's client would send it."""
        return Connection(authenticator=PinPadAuthenticator(self.link.pinpad)).send(message)

    async def request(self, message: Mapping[str, str]) -> Message:
        return await self.link.client.request(message)

    async def close(self) -> None:
        await self.link.close()


def amounts(response: Mapping[str, str]) -> dict[AmountType, int]:
    return decode_amounts(response["54"])
