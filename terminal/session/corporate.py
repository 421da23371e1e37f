"""A corporate card's part of a card session: the role, the menu, the fund account.

A corporate card belongs to an enterprise user (docs/enterprise.md). The host answers
its PIN check with the role/department pairs the user holds (field 124) instead of
balances; the customer picks one, and the host answers that claim with what the
company's table opens to it: operations and fund accounts. The menu then offers only
the operations this machine can do that the table permits (cash withdrawal, balance),
and the account choice only the fund accounts. Every later request carries the claim
(124) and the account (102), and the host checks them again: this side only spares
the customer choices that would be refused.
"""

from __future__ import annotations

from collections.abc import Callable

from host_link.amounts import AmountType, decode_amounts
from host_link.codec import Message
from host_link.enterprise import ACCOUNT_FIELD, FIELD, Claim, Offer, parse_offer
from host_link.errors import CodecError
from terminal.drivers.pinpad.base import FUNCTION_KEYS
from terminal.session.base import CustomerSession
from terminal.ui import Screen

# what this machine can do, by the table's operation name, in menu order
ATM_OPERATIONS = (("withdraw", "withdrawal", "Cash withdrawal"), ("balance", "balance", "Balance"))


class Corporate:
    """Owned by a :class:`~terminal.session.card.CardSession`; idle for other cards."""

    def __init__(self, session: CustomerSession, inquiry: Callable[[], Message]) -> None:
        """``inquiry`` builds the session's 0100 (its PIN block, its location)."""
        self.session, self.inquiry = session, inquiry
        self.offer: Offer | None = None  # the pairs the host offered after the PIN
        self.claim: Claim | None = None
        self.grant = Offer()  # what the chosen claim opens
        self.account = ""

    def offered(self, response: Message) -> bool:
        """Whether the PIN's answer offers role/department pairs (a corporate card)."""
        field = response.get(FIELD)
        if not field:
            return False
        try:
            self.offer = parse_offer(field)
        except CodecError as exc:
            self.session.log("host_error", error=str(exc))
            self.session.host_unavailable()
        return True

    def fields(self) -> Message:
        """Field 124 (the claim) and 102 (the fund account, once chosen) for a request."""
        out: Message = {}
        if self.claim is not None:
            out[FIELD] = self.claim.field()
        if self.account:
            out[ACCOUNT_FIELD] = self.account
        return out

    def _pick(self, screen: Screen, labels: list[str], where: str) -> int:
        """Show ``labels`` on F1.. and return the index of the key pressed."""
        s = self.session
        keys = FUNCTION_KEYS[: len(labels)]
        options = "   ".join(f"{k} {label}" for k, label in zip(keys, labels, strict=False))
        while True:
            s.display.show(screen, options=options)
            entry = s.devices.pinpad.read_keys(max_digits=0, timeout=s.config.timeouts.menu)
            s.customer_gave_up(entry.outcome, where)
            if entry.keys in keys:
                return keys.index(entry.keys)

    async def choose(self) -> tuple[str, dict[AmountType, int]]:
        """Role, menu, account: returns "withdrawal" or "balance", in the state the
        card session goes on from (AMOUNT_ENTRY or BALANCE_SHOWN), and the chosen
        account's balances and limit (none if the role may not see them)."""
        s = self.session
        assert self.offer is not None
        s.fire("roles_offered")
        roles = list(self.offer.roles[: len(FUNCTION_KEYS)])
        if not roles:
            s.decline("57")
        labels = [f"{c.role.replace('_', ' ')} @ {c.department}" for c in roles]
        self.claim = roles[self._pick(Screen.CHOOSE_ROLE, labels, "role")]
        response = await s.exchange(self.inquiry() | self.fields())
        if response["39"] != "00":
            s.decline(response["39"])
        try:
            self.grant = parse_offer(response.get(FIELD, ""))
        except CodecError as exc:
            s.log("host_error", error=str(exc))
            s.host_unavailable()
        s.log(
            "role_chosen",
            role=self.claim.role,
            department=self.claim.department,
            operations=list(self.grant.operations),
            accounts=list(self.grant.accounts),
        )
        s.fire("role_chosen")
        choice = self._menu()
        s.fire("account_choice")
        accounts = list(self.grant.accounts[: len(FUNCTION_KEYS)])
        s.log("accounts_offered", accounts=accounts)
        self.account = accounts[self._pick(Screen.CHOOSE_ACCOUNT, accounts, "account")]
        s.log("account_chosen", account=self.account)
        limits: dict[AmountType, int] = {}
        if "balance" in self.grant.operations:
            response = await s.exchange(self.inquiry() | self.fields())
            if response["39"] != "00":
                s.decline(response["39"])
            try:
                limits = decode_amounts(response.get("54", ""))
            except CodecError as exc:
                s.log("host_error", error=str(exc))
                s.host_unavailable()
        s.fire(f"{choice}_chosen")
        return choice, limits

    def menu_items(self) -> list[tuple[str, str]]:
        """(choice, label) of what the grant permits here, in menu order."""
        return [
            (choice, label)
            for operation, choice, label in ATM_OPERATIONS
            if operation in self.grant.operations
            and (choice != "withdrawal" or self.session.cash_available)
        ]

    def _menu(self) -> str:
        s = self.session
        items = self.menu_items()
        if not items or not self.grant.accounts:
            s.decline("57")  # nothing this role may do at this machine
        s.log("menu_offered", choices=[choice for choice, _ in items])
        index = self._pick(Screen.CORPORATE_MENU, [label for _, label in items], "menu")
        choice = items[index][0]
        s.log("menu", choice=choice)
        return choice
