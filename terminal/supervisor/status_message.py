"""The status message (0800/161): the device status list and cash position, to the host.

Sent when the list changes and on the terminal's echo rhythm, so the bank's fleet view
and its routing of cardless customers see what the operator at the machine would see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from host_link.codes import Mti, NetworkCode
from host_link.supervision import encode_status
from terminal.supervisor.attention import status_list


def status_request(mode: str, cash: int, devices: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The unstamped 0800/161 for ``devices`` (``atm diag status`` device dicts)."""
    return {
        "t": Mti.NETWORK_REQUEST,
        "70": NetworkCode.DEVICE_STATUS,
        "63": encode_status(mode, cash, status_list(devices)),
    }
