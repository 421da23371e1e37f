from __future__ import annotations

import pytest

from host_link.codec import Message


@pytest.fixture
def auth_request() -> Message:
    """A realistic 0100 as the terminal sends it (test card, PIN block hex)."""
    return {
        "t": "0100",
        "2": "4761739001010010",
        "3": "310000",
        "7": "0101120000",
        "11": "000042",
        "12": "120000",
        "13": "0101",
        "14": "3012",
        "22": "051",
        "32": "100001",
        "35": "4761739001010010=30121010000000000",
        "41": "ATM00001",
        "42": "MAINST000000001",
        "43": "Main Street branch".ljust(40),
        "49": "840",
        "52": "1B9C1845EB993A7A",
    }
