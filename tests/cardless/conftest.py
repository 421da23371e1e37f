from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from atm_common.clock import ManualClock
from atm_common.face.verify import FaceTemplate, FaceVerifier
from sim.host.api import create_app
from sim.host.cardless.phone import PhoneBank
from tests.cardless.helpers import face
from tests.host.helpers import DUKPT_TERMINAL, Host, Terminal, open_host


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def host(host_db: Path | str, clock: ManualClock) -> Iterator[Host]:
    """The demo bank (Frank enrolled from obama.jpg) in a real SQLite file, or in a
    PostgreSQL database (``host_db``: every test runs on both engines)."""
    face("obama.jpg")  # the demo seed's enrolment photo: fail clearly, not later
    h = open_host(host_db, clock)
    yield h
    h.conn.close()


@pytest.fixture
def bank(host: Host) -> PhoneBank:
    return PhoneBank(host.authoriser.cardless)


@pytest.fixture
def api(bank: PhoneBank) -> Iterator[TestClient]:
    with TestClient(create_app(bank, sms_inbox=True)) as client:
        yield client


@pytest.fixture
def terminal(host: Host, clock: ManualClock) -> Terminal:
    """The TDES demo ATM, keys exchanged (PIN blocks: format 0 in field 52)."""
    t = Terminal(clock)
    t.key_exchange(host)
    return t


@pytest.fixture
def dukpt_terminal(clock: ManualClock) -> Terminal:
    """The AES DUKPT demo ATM (PIN blocks: format 4 in field 110, KSN in 53)."""
    return Terminal(clock, DUKPT_TERMINAL)


_templates: dict[str, FaceTemplate] = {}


@pytest.fixture(scope="session")
def template() -> Callable[[str], FaceTemplate]:
    """``template(name)``: the face template of a shared photo, computed once per run."""

    def get(name: str) -> FaceTemplate:
        if name not in _templates:
            _templates[name] = FaceVerifier().template(face(name))
        return _templates[name]

    return get
