"""Real processes: ``atm payapp-server`` and ``atm host`` (phone API on), over TLS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.pki import Pki, make_pki
from sim.scenarios.binding_demo import BindingWorld, host_args, payapp_process
from sim.scenarios.demo import host_process
from sim.service_auth import new_host_key_file
from sim.services import ServiceProcess
from tests.host.helpers import DEMO_SEED

ALICE_PHONE, ALICE_ACCOUNT = "+4915100000001", "1000000001"
FRANK_PHONE, FRANK_ACCOUNT = "+4915100000006", "1000000006"


class Running:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pki: Pki = make_pki(workdir / "pki", ["ATM00001"])
        self.key = new_host_key_file(workdir / "payapp.key")
        self.stack = contextlib.ExitStack()
        self.payapp: ServiceProcess | None = None
        self.world: BindingWorld | None = None
        self.host_port = 0

    def start_payapp(self, port: int = 0) -> ServiceProcess:
        self.payapp = self.stack.enter_context(
            payapp_process(self.workdir, self.key, self.pki, port)
        )
        return self.payapp

    def start(self, *, binding_seconds: float | None = None) -> BindingWorld:
        payapp = self.start_payapp()
        extra = host_args(payapp.url, self.key)
        if binding_seconds is not None:
            extra += ["--binding-seconds", str(binding_seconds)]
        host = self.stack.enter_context(
            host_process(
                self.workdir / "host.db",
                DEMO_SEED,
                self.workdir / "host.log",
                api=True,
                demo=True,
                pki=self.pki,
                extra_args=extra,
            )
        )
        self.host_port = host.port
        self.world = BindingWorld(
            payapp.url,
            host.api_url,
            self.workdir / "host.db",
            self.key,
            self.pki.ca,
            self.workdir / "apps",
        )
        return self.world


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    run = Running(tmp_path)
    try:
        yield run
    finally:
        run.stack.close()


@pytest.fixture
def world(running: Running) -> BindingWorld:
    world = running.start()
    world.register("alice.app")
    world.register("mallory")
    return world
