"""The customer's phone, simulated: a client of the host's phone API (cardless withdrawal).

:class:`~sim.phone.client.PhoneClient` is the library; :mod:`sim.phone.cli` the command
line over it (``atm phone ...``, or ``python -m sim.phone ...``). Exports are imported on
first use, so ``import sim.phone.cli`` (the atm parser) does not pay for httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.phone.client import PhoneApiError, PhoneClient

__all__ = ["PhoneApiError", "PhoneClient"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sim.phone import client

        return getattr(client, name)
    raise AttributeError(f"module 'sim.phone' has no attribute {name!r}")
