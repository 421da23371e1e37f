"""Joint-account sessions in the soak: the co-owners' phones, and the session's script.

A joint session is a withdrawal by one co-owner of a generated joint account
(:func:`~sim.scenarios.seedgen.write_seed` with ``joint``); :class:`SoakPhones`, a
thread, plays the other two co-owners' apps over the host's phone API (whose URL changes
when the fault plan kills and restarts the host) and approves the session's request,
unless the session drew ``approval_never_comes``: then nobody answers and the approval
expires at the host. Either way the money checks must hold: an expired approval held
nothing, an approved one is debited exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from atm_common.errors import AtmError
from sim.phone.joint import JointApp
from sim.scenarios.scripts import WITHDRAW, Scenario
from sim.scenarios.seedgen import joint_code, joint_password, joint_token
from terminal.drivers.pinpad.sim import Keys, Pin

JOINT_SHARE = 0.03  # share of sessions that are joint (each waits for a phone)
APPROVAL_SECONDS = 1  # the generated bank's approval window: the silent fault waits this


def joint_scenario(i: int, account: int, owner: int, amount: int) -> Scenario:
    entries = [Pin(joint_password(account)), Pin(joint_code(account, owner))]
    return Scenario(f"t{i}", "", [*entries, WITHDRAW, Keys(str(amount))], "")


class SoakPhones(threading.Thread):
    """The co-owners of the session in progress (:meth:`watch`), approving its request."""

    def __init__(self, api_url: Callable[[], str], ca: Path | None) -> None:
        super().__init__(name="soak-phones", daemon=True)
        self.api_url, self.ca = api_url, ca
        self.errors = 0
        self.approved = 0
        self._watch: tuple[int, int, bool] | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._apps: dict[tuple[str, str], JointApp] = {}

    def watch(self, account: int, requester: int, silent: bool) -> None:
        with self._lock:
            self._watch = (account, requester, silent)

    def unwatch(self) -> None:
        with self._lock:
            self._watch = None

    def run(self) -> None:
        while not self._halt.wait(0.05):
            with self._lock:
                watch = self._watch
            if watch is None or watch[2]:
                continue
            account, requester = watch[0], watch[1]
            deciders = [k for k in range(3) if k != requester]
            try:
                app = self._app(joint_token(account, deciders[0]))
                for approval in app.pending():
                    app.decide(approval["approval_id"], True)
                    self.approved += 1
            except AtmError:
                self.errors += 1  # the host may be down (killed by the plan): try again

    def _app(self, token: str) -> JointApp:
        """One client per (API address, token): a TLS handshake per poll would be slow,
        and a restarted host listens on another port."""
        key = (self.api_url(), token)
        app = self._apps.get(key)
        if app is None:
            app = self._apps[key] = JointApp(key[0], token, ca=self.ca)
        return app

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        for app in self._apps.values():
            app.close()
