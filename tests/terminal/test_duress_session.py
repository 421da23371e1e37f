"""Duress PIN seen from the terminal: indistinguishable from a normal session; the alarm
reaches the alarm center even when it was down at the time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import socket
import statistics
import time
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from sim.alarm_center import AlarmCenter
from sim.host.app import build_host
from sim.host.outbox import AlarmDeliverer, OutboxWorker, entries
from sim.scenarios.demo import DEMO_SEED, demo_terminal, seed_cards, sim_customer
from sim.scenarios.scripts import WITHDRAW, Scenario, apply
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.ui import RecordingDisplay

ERIN = "ERIN EBERT"
WARM_UP, SAMPLES = 4, 60  # interleaved normal/duress pairs; the first few warm caches


def _seed(tmp_path: Path) -> Path:
    """The demo bank, with Erin's daily limit equal to her safety amount: a duress session
    and a normal one then offer the same amount, so everything she sees can be compared."""
    text = DEMO_SEED.read_text()
    at = text.index('name = "ERIN EBERT"')
    text = text[:at] + text[at:].replace("daily_limit = 100_000", "daily_limit = 30_000", 1)
    # every normal session is sampled for snapshots too, as duress ones always are: the
    # whole session (uploads included) must then take as long either way
    text = text.replace("[host]\n", "[host]\nevidence_sample = 1.0\n", 1)
    path = tmp_path / "seed.toml"
    path.write_text(text)
    return path


def test_a_duress_session_looks_exactly_like_a_normal_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = _seed(tmp_path)

    async def main() -> dict[str, list[tuple[list[str], str, float]]]:
        # one clock for both sides, a day per session: every session starts with the same
        # daily limit, so the only difference between the two kinds is the PIN
        clock = ManualClock(dt.datetime.now(dt.UTC))
        host = build_host(tmp_path / "host.db", seed, port=0, clock=clock, demo=True, pki=None)
        port = await host.start()
        terminal = demo_terminal(tmp_path, port, seed, clock, tls=None)
        assert terminal.start() and await terminal.ensure_signed_on()
        customer = sim_customer(terminal)
        card, _ = seed_cards(seed)[ERIN]
        runs: dict[str, list[tuple[list[str], str, float]]] = {"normal": [], "duress": []}
        try:
            for i in range(WARM_UP + 2 * SAMPLES):
                kind = ("normal", "duress")[i % 2]
                pin = "2580" if kind == "normal" else "0852"
                display = terminal.display
                assert isinstance(display, RecordingDisplay)
                display.shown.clear()
                apply(Scenario(kind, ERIN, [Pin(pin), WITHDRAW, Keys("20")], ""), customer, card)
                started = time.perf_counter()
                result = await terminal.serve_one()
                elapsed = time.perf_counter() - started
                assert result is not None
                codes = [
                    e.data["code"]
                    for e in terminal.journal.tail(40, session=result.session_id)
                    if e.event == "authorisation"
                ]
                if i >= WARM_UP:
                    texts = display.texts()  # the receipt's own numbers (time, STAN) differ
                    texts[-1] = re.sub(r"[0-9.,:-]+", "#", texts[-1])
                    runs[kind].append((texts, f"{result.outcome} {codes}", elapsed))
                clock.advance(86_400)
        finally:
            await terminal.close()
            await host.stop()
        queued = entries(host.authoriser.conn)
        # a day apart, each duress session is its own incident: one alarm each, and its
        # withdrawal adds a follow-up with the amount asked
        duress_sessions = (WARM_UP + 2 * SAMPLES) // 2
        assert len([e for e in queued if not e.payload.get("update")]) == duress_sessions
        amounts = [e for e in queued if e.payload.get("update") and "evidence" not in e.payload]
        snapshots = [e for e in queued if "evidence" in e.payload]
        assert len(amounts) == duress_sessions
        assert len(snapshots) == 2 * duress_sessions  # the camera's quiet snapshots
        host.authoriser.conn.close()
        return runs

    runs = asyncio.run(main())
    normal, duress = runs["normal"], runs["duress"]
    # same screens in the same order, same texts (limit, receipt), same codes and outcome
    assert {tuple(s) for s, _, _ in normal} == {tuple(s) for s, _, _ in duress}
    assert {o for _, o, _ in normal} == {o for _, o, _ in duress} == {"dispensed ['00']"}
    # response time: 95th percentiles within 50 ms
    p95 = {k: statistics.quantiles([t for *_, t in v], n=20)[-1] for k, v in runs.items()}
    assert abs(p95["normal"] - p95["duress"]) < 0.050, p95
    # nothing on the terminal side says duress: its logs, screens, journal
    terminal_logs = [
        r.getMessage() for r in caplog.records if r.name.startswith(("terminal", "host_link"))
    ]
    assert not [m for m in terminal_logs if "duress" in m.lower()]
    journal = (tmp_path / "journal.db").read_bytes().lower()
    assert b"duress" not in journal and b"alarm" not in journal


def test_alarm_center_outage_loses_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening on it, for now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    host_key = secrets.token_bytes(32)  # the host signs its alarms; the center checks

    async def main() -> None:
        clock = ManualClock(dt.datetime.now(dt.UTC))
        host = build_host(tmp_path / "host.db", DEMO_SEED, port=0, clock=clock, demo=True, pki=None)
        host_port = await host.start()
        worker = OutboxWorker(
            tmp_path / "host.db",
            clock,
            {"alarm": AlarmDeliverer(f"http://127.0.0.1:{port}", host_key, timeout=1)},
            base_delay=1.0,
            max_delay=5.0,
        )
        terminal = demo_terminal(tmp_path, host_port, DEMO_SEED, clock, tls=None)
        assert terminal.start() and await terminal.ensure_signed_on()
        card, _ = seed_cards(DEMO_SEED)[ERIN]
        apply(
            Scenario("d", ERIN, [Pin("0852"), WITHDRAW, Keys("100")], ""),
            sim_customer(terminal),
            card,
        )
        result = await terminal.serve_one()
        assert result is not None and result.outcome == "dispensed"
        for _ in range(3):  # the alarm center is down: attempts, backoff, nothing lost
            await worker.drain_once()
            clock.advance(10)
        pending = [e for e in entries(host.authoriser.conn) if e.status == "pending"]
        # alarm, amount follow-up and two snapshots, all kept; the follow-ups wait behind
        # the alarm (in order)
        assert len(pending) == 4 and pending[0].attempts >= 3
        center = AlarmCenter(tmp_path / "alarms.db", port=port, host_key=host_key)
        center.start()
        try:
            clock.advance(10)
            await worker.drain_once()
        finally:
            center.stop()
        from sim.alarm_center import list_alarms

        (alarm,) = list_alarms(tmp_path / "alarms.db")
        assert alarm["masked_pan"] == "476173******0051"
        assert [u["amount_requested"] for u in alarm["updates"]] == [10_000, 0, 0]
        assert [e["content_type"] for e in alarm["evidence"]] == ["image/jpeg"] * 2
        assert all(e.status == "delivered" for e in entries(host.authoriser.conn))
        await terminal.close()
        await host.stop()
        worker.close()
        host.authoriser.conn.close()

    asyncio.run(main())
