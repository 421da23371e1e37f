"""Joint-account test data: the demo seed's joint account, its co-owners and cards."""

from __future__ import annotations

from host_link.codec import Message
from host_link.joint import format_field61
from tests.host.helpers import CARDS, Card, Host, Terminal

JOINT, LOCKABLE = "1000000008", "1000000009"
GINA, HUGO, IRIS = CARDS["gina"], CARDS["hugo"], CARDS["iris"]
GINA_SAVINGS = CARDS["gina_expired"]  # her second card (demo_cards names it so)
CODES = {"gina": "3691", "hugo": "4812", "iris": "5923"}
TOKENS = {p: f"demo-app-token-{p}-00{n}" for p, n in (("gina", 11), ("hugo", 12), ("iris", 13))}
TOKENS["jon"] = "demo-app-token-jon-0014"


def code_field(t: Terminal, card: Card, code: str, **more: str) -> str:
    block, ksn = t.pin_block(card, code)
    pairs = {"CB": block.hex().upper(), **({"CK": ksn} if ksn else {}), **more}
    return format_field61(pairs)


def joint_withdrawal(
    t: Terminal, card: Card, amount: int, code: str, pin: str | None = None, **more: str
) -> Message:
    return t.withdrawal(card, amount, pin, **{"61": code_field(t, card, code, **more)})


def handle(host: Host, request: Message) -> Message:
    response = host.authoriser.handle(request)
    assert response is not None
    return response
