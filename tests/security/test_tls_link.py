"""The terminal <-> host ISO 8583 link over mutual TLS, against a real ``atm host --tls-dir``.

A terminal with its certificate signs on and withdraws. A client without a certificate,
with one from another CA, or with terminal A's certificate speaking as terminal B is
refused, and nothing is posted; a plain-TCP client gets no ISO 8583 answer; ``atm host``
without a transport refuses to start. Handshake failures are one log line each, never a
traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.tls import TlsFiles, client_context
from host_link.client import StanSequence
from host_link.codec import encode
from host_link.errors import HostLinkError
from host_link.framing import frame
from sim.pki import Pki, make_pki
from sim.scenarios.demo import (
    DEMO_SEED,
    HostProcess,
    demo_terminal,
    host_process,
    ledger_snapshot,
    seed_cards,
    sim_customer,
)
from sim.scenarios.link import TerminalLink
from sim.scenarios.scripts import WITHDRAW, Keys, Pin, Scenario, apply
from terminal import transactions
from terminal.config import TerminalConfig

pytestmark = pytest.mark.e2e

ATM = [sys.executable, "-m", "atm"]
A, B = "ATM00002", "ATM00001"  # B: the demo's TDES terminal (key exchange, then sign-on)
ALICE = "ALICE ARDEN"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostProcess, Pki, Path]]:
    workdir = tmp_path_factory.mktemp("tls-link")
    pki = make_pki(workdir / "pki", [A, B])
    log = workdir / "host.log"
    with host_process(workdir / "host.db", DEMO_SEED, log, demo=True, pki=pki) as host:
        yield host, pki, log


def _log(log: Path, wait_for: str = "", count: int = 1) -> str:
    """The host's log, once it holds ``count`` lines with ``wait_for`` (up to 5 s)."""
    deadline = time.monotonic() + 5
    while (text := log.read_text()).count(wait_for) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


async def _withdraw_as_b(link: TerminalLink) -> dict[str, str]:
    card, _ = seed_cards(DEMO_SEED)[ALICE]
    config = TerminalConfig(terminal_id=B)
    block = bytes.fromhex(link.pin_fields("1234", card.pan)["52"])
    return await link.request(transactions.withdrawal(config, card, block, 2000))


def test_a_terminal_with_its_certificate_signs_on_and_withdraws(
    bank: tuple[HostProcess, Pki, Path], tmp_path: Path
) -> None:
    host, pki, _ = bank
    account = seed_cards(DEMO_SEED)[ALICE][1]
    before = ledger_snapshot(host.db_path)[account]

    async def session() -> str:
        clock = ManualClock(dt.datetime.now(dt.UTC))
        terminal = demo_terminal(tmp_path, host.port, DEMO_SEED, clock, B, tls=pki.terminal(B))
        assert terminal.host.ssl is not None
        try:
            assert terminal.start()
            assert await terminal.ensure_signed_on(), terminal.out_of_service_reason
            card, _ = seed_cards(DEMO_SEED)[ALICE]
            scenario = Scenario("tls", ALICE, [Pin("1234"), WITHDRAW, Keys("100")], "")
            apply(scenario, sim_customer(terminal), card)
            result = await terminal.serve_one()
            assert result is not None
            return result.outcome
        finally:
            await terminal.close()

    assert asyncio.run(session()) == "dispensed"
    assert ledger_snapshot(host.db_path)[account] == before - 10_000


def _refused_client(host: HostProcess, files: TlsFiles) -> None:
    """A MACing link for B over ``files``: it can neither sign on nor withdraw."""

    async def attempt() -> None:
        link = TerminalLink(DEMO_SEED, B, host.port, timeout=5.0, ssl=client_context(files))
        try:
            with pytest.raises(HostLinkError):  # the handshake, or the first read, fails
                await link.sign_on()
        finally:
            await link.close()

    asyncio.run(attempt())


def test_no_certificate_or_another_cas_is_refused_and_nothing_is_posted(
    bank: tuple[HostProcess, Pki, Path], tmp_path: Path
) -> None:
    host, pki, log = bank
    before = ledger_snapshot(host.db_path)
    _refused_client(host, TlsFiles(pki.ca))  # trusts the host, proves nothing
    other = make_pki(tmp_path / "other", [B]).terminal(B)  # the same name, the wrong CA
    _refused_client(host, TlsFiles(pki.ca, other.cert, other.key))
    assert ledger_snapshot(host.db_path) == before
    text = _log(log, "TLS handshake with", 2)
    assert text.count("TLS handshake with") >= 2
    assert "Traceback" not in text


def test_a_certificate_speaks_for_its_own_terminal_only(
    bank: tuple[HostProcess, Pki, Path],
) -> None:
    """B's keys (a MACed, fresh request) over A's certificate: refused like a bad MAC."""
    host, pki, log = bank
    account = seed_cards(DEMO_SEED)[ALICE][1]

    async def attack() -> None:
        stan = StanSequence(500)  # past the STANs B's terminal used in this module
        link = TerminalLink(DEMO_SEED, B, host.port, stan=stan, ssl=client_context(pki.terminal(B)))
        try:
            await link.sign_on()  # genuinely B: key exchange and sign-on over B's certificate
            await link.client.close()
            link.client.ssl = client_context(pki.terminal(A))  # reconnects as A
            before = ledger_snapshot(host.db_path)[account]
            with pytest.raises(HostLinkError):  # an unsigned 63: not an answer to trust
                await _withdraw_as_b(link)
            assert ledger_snapshot(host.db_path)[account] == before
        finally:
            await link.close()

    asyncio.run(attack())
    text = _log(log, f"is not the certificate's {A!r}")
    assert f"is not the certificate's {A!r}" in text
    assert "Traceback" not in text


def test_a_plain_tcp_client_gets_no_iso_answer(bank: tuple[HostProcess, Pki, Path]) -> None:
    host, _, log = bank
    sign_on = {"t": "0800", "7": "0101000000", "11": "000001", "41": B, "70": "001"}

    async def plain() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        try:
            writer.write(frame(encode(sign_on)))
            await writer.drain()
            return await asyncio.wait_for(reader.read(65536), 10)
        except ConnectionError:
            return b""
        finally:
            writer.close()

    answer = asyncio.run(plain())
    assert answer == b"" or answer[0] == 0x15  # nothing, or a TLS alert record: no 0810
    assert "Traceback" not in _log(log)


def test_atm_host_without_a_transport_refuses_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [*ATM, "host", "--demo", "--db", str(tmp_path / "var" / "host.db"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2  # ExitCode.USAGE
    (line,) = run.stderr.splitlines()
    assert line.startswith("atm: error: ") and "--tls-dir" in line and "--plain" in line
    assert not (tmp_path / "var").exists()
    both = subprocess.run(
        [*ATM, "host", "--plain", "--tls-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_atm_pki_init_makes_a_private_ca(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    run = subprocess.run(
        [*ATM, "pki", "init", str(directory), "--terminal", A, "--terminal", B],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    pki = Pki(directory)
    assert pki.ca.is_file() and pki.terminal(A).cert.is_file()  # type: ignore[union-attr]
    assert directory.stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in directory.iterdir())
    again = subprocess.run(
        [*ATM, "pki", "init", str(directory)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 3 and "--force" in again.stderr  # ExitCode.CONFIG
