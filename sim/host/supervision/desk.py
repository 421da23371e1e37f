"""The host's handling of the supervision 0800s (field 70 161, 171, 172, 181, 182).

Why the host balances and not the terminal: the bank's books say how much cash a machine
should hold (its ``GL-CASH-<id>`` account: loads less dispensed, reversals put back).
At the end of an exchange the terminal sends what the supervisor counted; the host
compares it with that balance to the cent, books the cash taken out to the vault, posts
any difference to ``GL-DIFF-CASH`` (a shortage or an overage, never absorbed), books the
new load, and answers the figures so the terminal prints them on the balancing report.
Everything one message does commits together.

Who may exchange: the 181 and 182 are refused (57) unless ``terminal_modes`` has the
terminal in supervisor (or exchange) mode as replenisher, i.e. it told the host on entry.
Why an exchange id: an 0800/182 whose answer is lost is sent again by the terminal; the
181 hands out an id (``X=``), the 182 carries it, and a 182 for an id already booked is
answered with the stored figures and books nothing. An id the host did not hand this
terminal (unknown, superseded, another terminal's) is refused with 25 (no such record).

An 0800/171 with a card (field 2) and a PIN block is a supervisor card entry
(:mod:`sim.host.supervision.cards`): the host checks card and PIN and answers the role in
field 63; a refusal commits too (the wrong try counted, the attempt recorded).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Mapping

from atm_common.clock import Clock
from atm_common.errors import AtmError
from atm_common.masking import mask_pan
from host_link.codes import NetworkCode
from host_link.supervision import (
    SupervisionFormatError,
    decode_exchange,
    decode_status,
    encode_pairs,
    exchange_id,
    pairs,
)
from sim.host.ledger import Ledger, transaction
from sim.host.rules import Decline
from sim.host.supervision.cards import ATM_ROLES, SupervisorCards
from sim.host.supervision.schema import DIFFERENCE_ACCOUNT, VAULT_ACCOUNT, ensure_schema

log = logging.getLogger(__name__)

CODES = frozenset(
    {
        NetworkCode.DEVICE_STATUS,
        NetworkCode.SUPERVISOR_ENTER,
        NetworkCode.SUPERVISOR_EXIT,
        NetworkCode.EXCHANGE_START,
        NetworkCode.EXCHANGE_END,
    }
)


class SupervisionDesk:
    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        ledger: Ledger,
        currency: str,
        cards: SupervisorCards | None = None,
    ):
        """``cards``: the supervisor card check; without it a card entry is refused (12)."""
        self.conn, self.clock, self.ledger, self.cards = conn, clock, ledger, cards
        ensure_schema(conn, currency)

    def handle(self, request: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """(response code, extra fields) for one supervision 0800."""
        code = request.get("70", "")
        terminal = request.get("41", "")
        extra = {"70": code}
        try:
            with transaction(self.conn):
                row = self.conn.execute(
                    "SELECT cash_account FROM terminals WHERE id = ?", (terminal,)
                ).fetchone()
                if row is None:
                    return "03", extra  # not a terminal of this bank
                if code == NetworkCode.SUPERVISOR_ENTER and "2" in request:
                    return self._card_entry(terminal, request, extra)
                extra.update(self._dispatch(code, terminal, row[0], request.get("63", "")))
        except Decline as decline:  # rolled back: nothing changed
            log.warning("supervision 0800/%s from %s refused: %s", code, terminal, decline)
            return decline.code, extra
        except SupervisionFormatError as exc:
            log.warning("supervision 0800/%s from %s: %s", code, terminal, exc)
            return "30", extra
        except (AtmError, sqlite3.Error) as exc:
            log.error("supervision 0800/%s from %s failed: %s", code, terminal, exc)
            return "96", extra
        return "00", extra

    def _dispatch(self, code: str, terminal: str, cash: str, data: str) -> dict[str, str]:
        now = self.clock.now().isoformat()
        if code == NetworkCode.DEVICE_STATUS:
            mode, reported, devices = decode_status(data)
            self._mode(terminal, mode, now, reported=reported)
            self.conn.execute("DELETE FROM terminal_devices WHERE terminal_id = ?", (terminal,))
            for d in devices:
                self.conn.execute(
                    "INSERT INTO terminal_devices VALUES (?,?,?,?,?,?)"
                    " ON CONFLICT (terminal_id, kind) DO UPDATE SET state = excluded.state,"
                    " attention = excluded.attention, actor = excluded.actor,"
                    " updated_at = excluded.updated_at",
                    (terminal, d.kind, d.state, d.attention, d.actor, now),
                )
            return {}
        if code in (NetworkCode.SUPERVISOR_ENTER, NetworkCode.SUPERVISOR_EXIT):
            entering = code == NetworkCode.SUPERVISOR_ENTER
            role = data if entering else ""
            if entering and not (data.isalpha() and len(data) <= 16):
                raise SupervisionFormatError("supervision data: the role is not a name")
            if entering and role not in ATM_ROLES:
                raise Decline("57", f"role {role[:16]} does not open an ATM")
            self._mode(terminal, "supervisor" if entering else "in_service", now, role=role)
            self._event(terminal, now, "supervisor_enter" if entering else "supervisor_exit", role)
            return {}
        self._require_replenisher(terminal)
        balance = self.ledger.balance(cash).ledger
        if code == NetworkCode.EXCHANGE_START:
            opened = f"X{secrets.token_hex(6)}"
            self.conn.execute(
                "INSERT INTO open_exchanges (terminal_id, id, opened_at) VALUES (?,?,?)"
                " ON CONFLICT (terminal_id) DO UPDATE SET id = excluded.id,"
                " opened_at = excluded.opened_at",
                (terminal, opened, now),
            )
            self._mode(terminal, "exchange", now)
            self._event(terminal, now, "exchange_start", f"{opened}: host cash {balance}")
            return {"63": encode_pairs({"X": opened, "H": balance})}
        return self._exchange_end(terminal, cash, balance, data, now)

    def _require_replenisher(self, terminal: str) -> None:
        """The 181/182 only from a terminal the host has in supervisor mode as replenisher."""
        row = self.conn.execute(
            "SELECT mode, supervisor FROM terminal_modes WHERE terminal_id = ?", (terminal,)
        ).fetchone()
        if row is None or row[0] not in ("supervisor", "exchange") or row[1] != "replenisher":
            raise Decline("57", "not in supervisor mode as replenisher")

    def _exchange_end(
        self, terminal: str, cash: str, expected: int, data: str, now: str
    ) -> dict[str, str]:
        found_counts, loaded_counts = decode_exchange(data)
        if "X" not in pairs(data):
            raise SupervisionFormatError("supervision data: X (the 181's exchange id) is missing")
        xid = exchange_id(pairs(data)["X"])
        done = self.conn.execute(
            "SELECT terminal_id, host_expected, found, difference, loaded FROM cash_exchanges"
            " WHERE id = ?",
            (xid,),
        ).fetchone()
        if done is not None and done[0] == terminal:  # a resend: the stored figures again
            self._event(terminal, now, "exchange_repeat", f"{xid}: answered again, not booked")
            stored = {"X": xid, "H": done[1], "F": done[2], "D": done[3], "L": done[4]}
            return {"63": encode_pairs(stored)}
        opened = self.conn.execute(
            "SELECT id FROM open_exchanges WHERE terminal_id = ? AND id = ?", (terminal, xid)
        ).fetchone()
        if opened is None:
            raise Decline("25", f"exchange {xid} is not open for this terminal")
        for c in found_counts:
            if min(c.loaded, c.dispensed, c.rejected, c.retracted, c.remaining) < 0:
                raise SupervisionFormatError(f"cassette {c.position}: a count is negative")
            if c.denomination <= 0:
                raise SupervisionFormatError(f"cassette {c.position}: bad denomination")
        if any(count < 0 or denom <= 0 for _, denom, count in loaded_counts):
            raise SupervisionFormatError("a loaded count is negative or its denomination bad")
        found = sum(c.found_amount for c in found_counts)
        loaded = sum(denom * count for _, denom, count in loaded_counts)
        difference = found - expected
        if found:
            self.ledger.transfer(VAULT_ACCOUNT, cash, found, kind="unload", terminal_id=terminal)
        if difference < 0:
            self.ledger.transfer(
                DIFFERENCE_ACCOUNT, cash, -difference, kind="cash_shortage", terminal_id=terminal
            )
        elif difference > 0:
            self.ledger.transfer(
                cash, DIFFERENCE_ACCOUNT, difference, kind="cash_overage", terminal_id=terminal
            )
        if loaded:
            self.ledger.transfer(cash, VAULT_ACCOUNT, loaded, kind="load", terminal_id=terminal)
        counts = json.dumps(
            {
                "found": [c.__dict__ for c in found_counts],
                "loaded": [
                    {"position": p, "denomination": d, "count": n} for p, d, n in loaded_counts
                ],
            },
            sort_keys=True,
        )
        self.conn.execute(
            "INSERT INTO cash_exchanges VALUES (?,?,?,?,?,?,?,?)",
            (xid, terminal, now, expected, found, difference, loaded, counts),
        )
        self.conn.execute("DELETE FROM open_exchanges WHERE terminal_id = ?", (terminal,))
        self.conn.execute("UPDATE terminals SET cash_on_hand = ? WHERE id = ?", (loaded, terminal))
        self._mode(terminal, "supervisor", now, reported=loaded)
        detail = f"{xid}: expected {expected} found {found} difference {difference}"
        self._event(terminal, now, "exchange_end", f"{detail} loaded {loaded}")
        if difference:
            log.warning("cash difference at %s: %s", terminal, detail)
        figures: dict[str, int | str] = {
            "X": xid,
            "H": expected,
            "F": found,
            "D": difference,
            "L": loaded,
        }
        return {"63": encode_pairs(figures)}

    def _card_entry(
        self, terminal: str, request: Mapping[str, str], extra: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """Card + PIN: 00 and the card's role in field 63, or the refusal's code. Every
        attempt is a ``supervisor_card`` event (PAN masked, nothing of the PIN)."""
        now = self.clock.now().isoformat()
        masked = mask_pan(request.get("2", ""))
        if self.cards is None:
            self._event(terminal, now, "supervisor_card", f"{masked} refused 12: no card check")
            return "12", extra
        try:
            role = self.cards.verify(dict(request))
        except Decline as decline:
            log.warning("supervisor card entry at %s refused: %s", terminal, decline)
            self._event(terminal, now, "supervisor_card", f"{masked} refused {decline}")
            return decline.code, extra
        self._event(terminal, now, "supervisor_card", f"{masked} accepted {role}")
        self._mode(terminal, "supervisor", now, role=role)
        self._event(terminal, now, "supervisor_enter", role)
        return "00", extra | {"63": role}

    def _mode(
        self, terminal: str, mode: str, now: str, *, reported: int | None = None, role: str = ""
    ) -> None:
        self.conn.execute(
            "INSERT INTO terminal_modes (terminal_id, mode, reported_cash, supervisor, updated_at)"
            " VALUES (?,?,?,?,?) ON CONFLICT (terminal_id) DO UPDATE SET mode = excluded.mode,"
            " reported_cash = COALESCE(excluded.reported_cash, terminal_modes.reported_cash),"
            " supervisor = CASE WHEN excluded.supervisor = '' AND excluded.mode <> 'in_service'"
            " THEN terminal_modes.supervisor ELSE excluded.supervisor END,"
            " updated_at = excluded.updated_at",
            (terminal, mode, reported, role, now),
        )

    def _event(self, terminal: str, now: str, kind: str, detail: str) -> None:
        self.conn.execute(
            "INSERT INTO supervision_events VALUES (?,?,?,?,?)",
            (f"E{secrets.token_hex(8)}", terminal, now, kind, detail),
        )
