"""The host's ISO 8583 port against a peer without keys: limits that keep terminals served.

Found against a real ``atm host``: 1,030 idle sockets locked a real terminal out; one
keyless client got 67,956 signed 63s and as many ERROR log lines in 5 s. Now a reply to
what failed its MAC is unsigned, a connection is dropped after a few such requests, error
lines a peer provokes are rate-limited, and silent or idle connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path

from atm_common.clock import ManualClock
from host_link.codec import Message, decode, encode
from host_link.framing import frame
from sim.host.app import build_host
from sim.scenarios.demo import DEMO_SEED, demo_terminal
from sim.services import service_process

WITHDRAWAL: Message = {
    "t": "0200",
    "3": "010000",
    "4": "000000010000",
    "7": "1207120000",
    "11": "000001",
    "41": "ATM00001",
    "49": "840",
}


async def read_frame(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes | None:
    """One frame's body, or None when the host closed the connection."""
    try:
        head = await asyncio.wait_for(reader.readexactly(2), timeout)
        return await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), timeout)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def test_a_keyless_client_gets_unsigned_63s_and_is_dropped(tmp_path: Path) -> None:
    log_file = tmp_path / "host.log"
    args = ["--db", str(tmp_path / "host.db"), "--seed", str(DEMO_SEED), "--demo", "--plain"]
    args += ["--log", str(log_file)]
    with service_process("host", args) as host:

        async def keyless(rounds: int) -> list[list[Message | None]]:
            seen = []
            for _ in range(rounds):
                reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
                answers: list[Message | None] = []
                for _ in range(4):
                    writer.write(frame(encode(WITHDRAWAL)))  # no MAC: no key
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    body = await read_frame(reader)
                    answers.append(decode(body) if body else None)
                    if body is None:
                        break
                writer.close()
                seen.append(answers)
            return seen

        seen = asyncio.run(keyless(40))
    first = seen[0]
    # two answers, both 63 and neither signed, then the connection is gone
    assert [a["39"] if a else None for a in first] == ["63", "63", None]
    assert all("64" not in a and "128" not in a for a in first if a)
    errors = [line for line in log_file.read_text().splitlines() if " ERROR " in line]
    assert 0 < len(errors) <= 15, len(errors)  # 80 refusals, logged at a bounded rate
    assert "suppressed" in log_file.read_text() or len(errors) <= 10


def test_silent_connections_are_closed_and_a_terminal_still_gets_in(tmp_path: Path) -> None:
    async def main() -> tuple[int, int, bool]:
        server = build_host(tmp_path / "host.db", DEMO_SEED, port=0, demo=True, pki=None)
        server.first_message_timeout = 0.5
        server.max_connections = 20
        port = await server.start()
        try:
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
            # over the cap: closed at once
            extra_r, extra_w = await asyncio.open_connection("127.0.0.1", port)
            refused = await read_frame(extra_r, timeout=2) is None
            extra_w.close()
            await asyncio.sleep(1.0)  # the silent ones time out
            closed = 0
            for reader, writer in idle:
                if await read_frame(reader, timeout=1) is None:
                    closed += 1
                writer.close()
            terminal = demo_terminal(
                tmp_path, port, DEMO_SEED, ManualClock(dt.datetime.now(dt.UTC)), tls=None
            )
            assert terminal.start()
            signed_on = await terminal.ensure_signed_on()
            await terminal.close()
            return closed, int(refused), signed_on
        finally:
            await server.stop()
            server.authoriser.conn.close()

    closed, refused, signed_on = asyncio.run(main())
    assert refused == 1
    assert closed == 20
    assert signed_on
