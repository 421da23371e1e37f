"""Generated banks for benchmarks and soak runs: the demo seed's host keys, many
terminals and customers, each card on its own account with a distinct PIN."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from atm_common.files import write_private
from sim.host.seed import read_toml
from sim.scenarios.demo import DEMO_SEED, TERMINAL_ID

BIG = 50_000_000_000  # minor units: fits field 54's 12 digits, never runs out


def luhn_complete(body: str) -> str:
    """``body`` plus its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card_pan(index: int) -> str:
    return luhn_complete(f"476173{index:09d}")


def card_pin(index: int) -> str:
    return f"{(1234 + 7 * index) % 10_000:04d}"


def duress_pin(index: int) -> str:
    """A personal-safety PIN for card ``index`` (enrolled when the seed asks for one)."""
    return f"{(int(card_pin(index)) + 5000) % 10_000:04d}"


def card_name(index: int) -> str:
    return f"GENERATED CARD {index:05d}"


def account_number(index: int) -> str:
    return f"{2_000_000_000 + index}"


def joint_account_number(index: int) -> str:
    """Generated joint accounts (three co-owners each; docs/joint-accounts.md)."""
    return f"{3_000_000_000 + index}"


def joint_card_pan(index: int, owner: int) -> str:
    return luhn_complete(f"476175{index * 3 + owner:09d}")


def joint_password(index: int) -> str:
    return f"{(4321 + 13 * index) % 10_000:04d}"


def joint_code(index: int, owner: int) -> str:
    """Co-owner ``owner`` (0..2)'s personal code: distinct on one account."""
    return f"{(1000 + 1111 * owner + 7 * index) % 10_000:04d}"


def joint_token(index: int, owner: int) -> str:
    return f"generated-app-token-{index}-{owner}"


def _joint_lines(joint: int, balance: int, approval_seconds: int) -> list[str]:
    lines = ["[joint]", "failures_allowed = 2", f"approval_seconds = {approval_seconds}", ""]
    for j in range(joint):
        number = joint_account_number(j)
        people = [f"joint-{j}-{k}" for k in range(3)]
        for k, person in enumerate(people):
            lines += ["[[persons]]", f'id = "{person}"', f'name = "Joint Owner {j}-{k}"']
            lines += [f'phone = "+49152{j:05d}{k}"', ""]
            lines += ["[[joint_people]]", f'person = "{person}"', f'token = "{joint_token(j, k)}"']
            lines += [f'identity = "ID-{j}-{k}"', ""]
        lines += ["[[accounts]]", f'number = "{number}"', f"owners = {json.dumps(people)}"]
        lines += [f"balance = {balance}", ""]
        owners = ", ".join(
            f'{{ person = "{p}", code = "{joint_code(j, k)}" }}' for k, p in enumerate(people)
        )
        lines += ["[[joint_accounts]]", f'number = "{number}"', f'password = "{joint_password(j)}"']
        lines += [f"owners = [{owners}]", ""]
        for k, person in enumerate(people):
            lines += ["[[cards]]", f'pan = "{joint_card_pan(j, k)}"', f'owner = "{person}"']
            lines += [f'accounts = ["{number}"]', 'expiry = "3012"', f'name = "JOINT {j}-{k}"']
            lines += [f'pin = "{joint_password(j)}"', f"daily_limit = {BIG}", ""]
    return lines


def terminal_id(index: int) -> str:
    """Eight characters (field 41); index 0 is the demo's ATM00001."""
    return TERMINAL_ID if index == 0 else f"BT{index:06d}"


def write_seed(
    path: Path,
    cards: int,
    terminals: Sequence[str] = (TERMINAL_ID,),
    *,
    balance: int = BIG,
    daily_limit: int = BIG,
    duress_every: int = 0,
    joint: int = 0,
    approval_seconds: int = 2,
) -> dict[str, str]:
    """Write the seed; returns terminal id -> TMK (hex). Terminals use TDES key sets:
    ids from the demo seed keep their master keys, others get one derived from the id."""
    demo = read_toml(DEMO_SEED)
    known = {t["id"]: t["tmk"] for t in demo["terminals"] if "tmk" in t}
    lines = [
        "# Generated: the demo seed's keys, many customers.",
        "[host]",
        *(f"{k} = {json.dumps(v)}" for k, v in demo["host"].items()),
        "",
    ]
    keys: dict[str, str] = {}
    for tid in terminals:
        key = known.get(tid) or hashlib.sha256(f"generated {tid}".encode()).hexdigest()[:32].upper()
        keys[tid] = key
        lines += ["[[terminals]]", f'id = "{tid}"', 'site = "Generated"', f"cash = {BIG}"]
        lines += ['security = "tdes"', f'tmk = "{key}"', ""]
    lines += ["[[persons]]", 'id = "generated"', 'name = "Generated Customer"', ""]
    for i in range(cards):
        number = account_number(i)
        lines += ["[[accounts]]", f'number = "{number}"', 'owners = ["generated"]']
        lines += [f"balance = {balance}", ""]
        lines += ["[[cards]]", f'pan = "{card_pan(i)}"', 'owner = "generated"']
        lines += [f'accounts = ["{number}"]', 'expiry = "3012"', f'name = "{card_name(i)}"']
        lines += [f'pin = "{card_pin(i)}"', f"daily_limit = {daily_limit}"]
        if duress_every and i % duress_every == 0:
            lines.append(f'duress_pin = "{duress_pin(i)}"')
        lines.append("")
    if joint:
        lines += _joint_lines(joint, balance, approval_seconds)
    write_private(path, "\n".join(lines))  # keys and clear PINs: 0600
    return keys
