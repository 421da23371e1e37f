"""``atm diag card-reader``: readers, ATR and masked PAN, as a JSON-able dict."""

from __future__ import annotations

import json

import pytest

from sim.devices.pcsc_env import PcscEnv
from terminal.diag.card_reader import card_reader_report, format_report

from .conftest import SLOT1, StartCard, seed_card

pytestmark = pytest.mark.pcsc

BOB = "5413330089010012"


def test_report_lists_readers_atr_and_masked_pan(env: PcscEnv, cards: StartCard) -> None:
    cards(seed_card(BOB), port=SLOT1).insert()
    report = card_reader_report("Virtual PCD 00 01")
    text = json.dumps(report)
    assert BOB not in text and "BOB BRANDT" not in text
    assert report["service"] == "ok" and report["selected_reader"] == "Virtual PCD 00 01"
    by_name = {r["name"]: r for r in report["readers"]}
    assert by_name["Virtual PCD 00 00"]["card_present"] is False
    slot1 = by_name["Virtual PCD 00 01"]
    assert slot1["atr"] == "3B 68 00 00 41 54 4D 53 49 4D 30 31"
    assert slot1["atr_info"]["protocols"] == ["T=0"]
    assert report["card"] == {
        "masked_pan": "541333******0012",
        "expiry": "2911",
        "service_code": "201",
    }
    human = format_report(report)
    assert "541333******0012" in human and "* Virtual PCD 00 01" in human


def test_report_names_an_unreadable_card(env: PcscEnv, cards: StartCard) -> None:
    cards(mode="unknown_aid").insert()
    report = card_reader_report("Virtual PCD 00 00")
    assert "6A82" in report["card"]["error"]
    assert "unreadable" in format_report(report)


def test_report_when_pcscd_is_down(env: PcscEnv) -> None:
    env.stop_pcscd()
    report = card_reader_report()
    assert report["service"] == "unavailable" and "pcscd" in report["error"]
    assert report["readers"] == [] and report["card"] is None
    assert "pcscd: unavailable" in format_report(report)
