"""``atm diag pinpad``: what a field engineer may see of a PIN pad, and the TMK ceremony.

Why library functions: a CLI and the tests call the same code, and a report is a plain
dict ready for JSON. What is shown: the pad's identity, health, security mode, key check
values and, for DUKPT, the current KSN (key id + counter). Never a key, a component, a
PIN or a PIN block: not in the result, not in an error, not in a log record.

Report shape (EPP, tdes)::

    {"device": "EppPinPad(url='/dev/ttyUSB1', slot=1)", "status": "ok",
     "info": {"model": "ZT588", "serial": "...", "firmware": "..."},
     "security": "tdes", "pin_key_slot": 1,
     "key_check_values": {"00": "08D7B4", "01": "...", "02": "..."}, "ksn": null}

Key ceremony (:func:`load_master_key`): two or more custodians each type a clear
component; each one's own KCV is shown so its custodian can check it against the
envelope before the next is entered, the pad XORs them into the terminal master key, and
the combined key's KCV is returned to compare with the one the bank sent.
"""

from __future__ import annotations

import logging
from typing import Any

from atm_common.crypto.tdes import key_check_value
from atm_common.errors import LocalProtocolError, RemoteProtocolError, SecurityError
from terminal.drivers.pinpad.base import PinPad
from terminal.drivers.pinpad.epp import EppPinPad
from terminal.drivers.pinpad.sim import SimPinPad
from terminal.errors import DeviceError, DeviceFault

log = logging.getLogger(__name__)

MIN_COMPONENTS = 2  # split knowledge: one custodian alone never holds the key
MAX_COMPONENTS = 9  # the LC part number is one digit


def device_report(pinpad: PinPad) -> dict[str, Any]:
    """Identity, health, security mode and key check values of an opened PIN pad.

    For an EPP everything is asked of the device, none of it changes its state (no DUKPT
    counter is used). A pad that stops answering midway is reported with ``error`` and
    its status, not raised: that is the diagnosis. Other backends report what they
    expose (the in-process sim: its KCVs by key name).
    """
    report: dict[str, Any] = {"device": repr(pinpad)}
    try:
        if isinstance(pinpad, EppPinPad):
            report["info"] = pinpad.device_info()
            report["security"] = pinpad.security_mode()
            report["pin_key_slot"] = pinpad.pin_key_slot
            kcvs = pinpad.key_check_values()
            report["key_check_values"] = {f"{slot:02d}": kcv for slot, kcv in kcvs.items()}
            report["ksn"] = pinpad.current_ksn() if report["security"] == "aes-dukpt" else None
        elif isinstance(pinpad, SimPinPad):
            report["key_check_values"] = pinpad.check_values()
    except (DeviceError, RemoteProtocolError) as exc:
        log.warning("pinpad diagnosis: %s", exc)
        report["error"] = str(exc)
    report["status"] = pinpad.status().value
    return report


class KeyCheckMismatch(SecurityError):
    """The components do not make the key the bank announced (its check value differs)."""


def _component_key(component: str) -> bytes:
    """One clear component as bytes; errors never echo the component."""
    try:
        key = bytes.fromhex(component)
    except ValueError:
        raise LocalProtocolError("a key component is not a hex string") from None
    if len(key) not in (16, 24):
        raise LocalProtocolError(f"a key component must be 16 or 24 bytes, got {len(key)}")
    return key


def component_kcv(component: str) -> str:
    """KCV of one clear component, for its custodian to compare with their envelope."""
    return key_check_value(_component_key(component))


def combined_kcv(components: list[str]) -> str:
    """KCV of the key the components XOR into (what the pad will hold: DES ignores the
    parity bits the pad may fix), known before anything is sent to it."""
    keys = [_component_key(c) for c in components]
    if len({len(k) for k in keys}) != 1:
        raise LocalProtocolError("key components must all have the same length")
    combined = bytes(len(keys[0]))
    for key in keys:
        combined = bytes(a ^ b for a, b in zip(combined, key, strict=True))
    return key_check_value(combined)


def load_master_key(
    pinpad: EppPinPad,
    components: list[str],
    *,
    slot: int = 0,
    expected_kcv: str | None = None,
) -> dict[str, Any]:
    """Key ceremony: load the TMK into ``slot`` from clear hex ``components``, in order.

    Every component, and with ``expected_kcv`` the combined key's check value, is
    checked before the first is sent, so a typo or a wrong component never leaves the
    slot half built or holding the wrong key (:class:`KeyCheckMismatch`). Returns
    ``{"slot", "components": [{"part", "component_kcv", "slot_kcv"}], "tmk_kcv"}``
    (``slot_kcv``: what the slot holds after that part) and, when ``expected_kcv`` is
    given, ``kcv_matches`` (always true: a mismatch raises). Device refusals (parity
    ``E2``, a pad
    in aes-dukpt mode ``EB``) raise as the driver's errors.
    """
    if not MIN_COMPONENTS <= len(components) <= MAX_COMPONENTS:
        raise LocalProtocolError(
            f"a TMK is loaded from {MIN_COMPONENTS}-{MAX_COMPONENTS} components, "
            f"got {len(components)}"
        )
    component_kcvs = [component_kcv(c) for c in components]
    expected = expected_kcv.strip().upper() if expected_kcv is not None else None
    combined = combined_kcv(components)
    if expected is not None and combined != expected:
        raise KeyCheckMismatch(
            f"the components make a key with check value {combined}, not {expected}:"
            " nothing was loaded; each custodian compares their component's KCV with"
            " their envelope, or the bank confirms the expected KCV"
        )
    steps: list[dict[str, Any]] = []
    for part, (component, kcv) in enumerate(zip(components, component_kcvs, strict=True), 1):
        slot_kcv = pinpad.load_component(slot, component, part=part)
        steps.append({"part": part, "component_kcv": kcv, "slot_kcv": slot_kcv})
    tmk_kcv = str(steps[-1]["slot_kcv"])
    if tmk_kcv != combined:
        raise DeviceFault(
            "pinpad",
            f"the pad reports check value {tmk_kcv} for the loaded key, expected"
            f" {combined}: do not use it; load the key again",
        )
    result: dict[str, Any] = {"slot": slot, "components": steps, "tmk_kcv": tmk_kcv}
    if expected is not None:
        result["kcv_matches"] = True  # KCVs are public; a mismatch loaded nothing
    log.info(
        "pinpad: TMK loaded into slot %02d from %d components, KCV %s",
        slot,
        len(components),
        tmk_kcv,
    )
    return result
