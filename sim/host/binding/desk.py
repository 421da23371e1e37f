"""The bank's side of binding an account to a payment app: sessions, the payment
server's callbacks, revocations, the customer's notices.

A session is written together with its request to the payment server (the durable
outbox, kind ``binding``, one ordered queue ``payapp``) in one transaction, so a request
is sent exactly when the session exists; the outbox deliverer
(:mod:`sim.host.binding.delivery`) records the address it gets back. The payment
server's callbacks (``bound``, ``failed``, ``revoked``) are idempotent here: the same
callback twice changes nothing the second time. A ``bound`` for a session the bank no
longer accepts (expired, failed, unknown) is refused (409), and the payment server then
never activates that binding: no binding is ever live on one side only.

The payment server never learns an account number: it gets an opaque ``account_ref``
(an HMAC under the bank's key), the masked account and the masked holder name, and the
phone the bank holds, which is where its SMS code must go.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any

from atm_common.clock import Clock
from atm_common.masking import mask_account, mask_user
from sim.host import outbox
from sim.host.binding.schema import ensure_schema
from sim.host.cardless import sms
from sim.host.cardless.errors import Conflict, Forbidden, Gone, NotFound, Unprocessable
from sim.host.ledger import transaction

ADDRESS_SECONDS = 300.0  # a binding address (and its session) lives five minutes
PAYAPP = "payapp"  # the outbox destination: one ordered queue to the payment server
PATHS = ("atm_qr", "app_qr", "push")


def holder_mask(name: str) -> str:
    """``Alice Arden`` -> ``A**** Arden``: enough for the customer to recognise."""
    parts = name.split()
    if len(parts) < 2:
        return mask_user(name)
    return " ".join([parts[0][0] + "*" * (len(parts[0]) - 1), *parts[1:]])


class BindingDesk:
    """Binding sessions and bindings on the host's connection (call it from the loop)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        key: bytes,
        *,
        callback_url: str = "",
        on_queued: Callable[[], None] | None = None,
        address_seconds: float = ADDRESS_SECONDS,
    ) -> None:
        self.conn, self.clock, self._key = conn, clock, key
        self.address_seconds = address_seconds  # how long a binding address lives
        self.callback_url = callback_url  # the phone API's /payapp/callbacks, once known
        self.on_queued = on_queued  # wakes the outbox worker after a commit
        ensure_schema(conn)

    def now(self) -> float:
        return self.clock.now().timestamp()

    def account_ref(self, account: str) -> str:
        return hmac.new(self._key, f"payapp-account:{account}".encode(), hashlib.sha256).hexdigest()

    # -- opening a session (inside the caller's transaction) -------------------------------

    def open(
        self,
        person_id: str,
        account: str,
        path: str,
        *,
        app_user: str | None = None,
        terminal_id: str | None = None,
    ) -> dict[str, Any]:
        """A new session and its request to the payment server; the caller's transaction
        (the ISO request's, or :meth:`start`'s) commits both or neither."""
        if path not in PATHS:
            raise Unprocessable(f"path must be one of {', '.join(PATHS)}")
        if (path == "push") != (app_user is not None):
            raise Unprocessable("an app user is needed for a pushed message, and only then")
        if not self.callback_url:
            raise Gone("payment-app binding is not available at this bank now")
        owner = self.conn.execute(
            "SELECT p.name, p.phone, a.locked FROM ownership o JOIN persons p ON p.id ="
            " o.person_id JOIN accounts a ON a.id = o.account_id"
            " WHERE o.person_id = ? AND o.account_id = ?",
            (person_id, account),
        ).fetchone()
        if owner is None:
            raise NotFound("no such account of this customer")
        if owner["locked"]:
            raise Forbidden("this account is locked")
        if not owner["phone"]:
            raise Unprocessable("the bank holds no phone number for this customer")
        session_id = secrets.token_urlsafe(24)
        expires = self.now() + self.address_seconds
        self.conn.execute(
            "INSERT INTO binding_sessions (id, person_id, account_id, path, app_user,"
            " terminal_id, status, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                session_id,
                person_id,
                account,
                path,
                app_user,
                terminal_id,
                "requested",
                self.clock.now().isoformat(),
                expires,
            ),
        )
        request: dict[str, Any] = {
            "type": "session",
            "session_id": session_id,
            "path": path,
            "account_ref": self.account_ref(account),
            "masked_account": mask_account(account),
            "holder": holder_mask(owner["name"]),
            "phone": owner["phone"],
            "callback_url": self.callback_url,
            "expires_at": expires,
        }
        if app_user is not None:
            request["app_user"] = app_user
        outbox.enqueue(self.conn, "binding", request, PAYAPP, clock=self.clock)
        return self.view(session_id)

    def start(self, person_id: str, account: str, path: str, **kw: Any) -> dict[str, Any]:
        """:meth:`open` in a transaction of its own (the bank app)."""
        with transaction(self.conn):
            view = self.open(person_id, account, path, **kw)
        self._queued()
        return view

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()

    # -- reading --------------------------------------------------------------------------

    def _row(self, session_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM binding_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such binding session")
        return row

    def view(self, session_id: str, person_id: str | None = None) -> dict[str, Any]:
        """The session as its customer sees it; an elapsed one reads ``expired``."""
        row = self._row(session_id)
        if person_id is not None and row["person_id"] != person_id:
            raise NotFound("no such binding session")
        status = row["status"]
        if status in ("requested", "address") and row["expires_at"] <= self.now():
            status = "expired"
        return {
            "session_id": row["id"],
            "path": row["path"],
            "account": row["account_id"],
            "status": status,
            "address": row["address"] if status == "address" else None,
            "reason": row["reason"],
            "binding_id": row["binding_id"],
            "expires_at": row["expires_at"],
        }

    def bindings(self, person_id: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM payapp_bindings", tuple[str, ...]()
        if person_id is not None:
            query, args = query + " WHERE person_id = ?", (person_id,)
        rows = self.conn.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [
            {
                "binding_id": r["id"],
                "account": r["account_id"],
                "app_user": r["app_user"],
                "path": r["path"],
                "status": r["status"],
                "revoked_by": r["revoked_by"],
            }
            for r in rows
        ]

    # -- the outbox deliverer's side ------------------------------------------------------

    def sendable(self, session_id: str) -> bool:
        """Whether a queued address request should still go out (else it is closed here:
        an address nobody can show any more is never asked for)."""
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT status, expires_at FROM binding_sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None or row["status"] != "requested":
                return False
            if row["expires_at"] <= self.now():
                self._close(session_id, "expired", "the payment server did not answer in time")
                return False
            return True

    def addressed(self, session_id: str, address: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE binding_sessions SET status = 'address', address = ?"
                " WHERE id = ? AND status = 'requested'",
                (address, session_id),
            )

    def refused(self, session_id: str, reason: str) -> None:
        """The payment server refused the session request: it failed, nothing to bind."""
        with transaction(self.conn):
            self._close(session_id, "failed", reason)

    def _close(self, session_id: str, status: str, reason: str) -> None:
        self.conn.execute(
            "UPDATE binding_sessions SET status = ?, reason = ?, address = NULL"
            " WHERE id = ? AND status IN ('requested', 'address')",
            (status, reason[:200], session_id),
        )

    # -- the payment server's callbacks ---------------------------------------------------

    def callback(self, body: dict[str, Any]) -> dict[str, Any]:
        """``bound`` / ``failed`` / ``revoked``, each idempotent; 409 refuses a binding."""
        kind = body.get("type")
        with transaction(self.conn):
            if kind == "bound":
                result = self._bound(body)
            elif kind == "failed":
                self._close(str(body.get("session_id")), "failed", str(body.get("reason", "")))
                result = {"accepted": True}
            elif kind == "revoked":
                result = self._revoked(str(body.get("binding_id")), "app")
            else:
                raise Unprocessable("type must be bound, failed or revoked")
        self._queued()
        return result

    def _bound(self, body: dict[str, Any]) -> dict[str, Any]:
        session_id, binding_id = str(body.get("session_id")), str(body.get("binding_id"))
        known = self.conn.execute(
            "SELECT session_id FROM payapp_bindings WHERE id = ?", (binding_id,)
        ).fetchone()
        if known is not None:
            if known["session_id"] != session_id:
                raise Conflict("this binding id belongs to another session")
            return {"accepted": True}  # the same callback again
        row = self.conn.execute(
            "SELECT * FROM binding_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise Conflict("no such binding session at the bank")
        if row["status"] != "address" or row["expires_at"] <= self.now():
            raise Conflict(f"the bank's binding session is {row['status']}: not bound")
        app_user = mask_user(str(body.get("app_user", "")))
        self.conn.execute(
            "INSERT INTO payapp_bindings VALUES (?,?,?,?,?,?,'active',NULL,?)",
            (
                binding_id,
                session_id,
                row["person_id"],
                row["account_id"],
                app_user,
                row["path"],
                self.clock.now().isoformat(),
            ),
        )
        self.conn.execute(
            "UPDATE binding_sessions SET status = 'bound', binding_id = ?, address = NULL"
            " WHERE id = ?",
            (binding_id, session_id),
        )
        self._notify(
            row["person_id"],
            f"Your bank: account {mask_account(row['account_id'])}"
            f" was bound to payment app user {app_user}. Not you? Call us.",
        )
        return {"accepted": True}

    def _notify(self, person_id: str, text: str) -> None:
        phone = self.conn.execute("SELECT phone FROM persons WHERE id = ?", (person_id,)).fetchone()
        if phone is not None and phone["phone"]:
            sms.send(self.conn, self.clock, phone["phone"].lstrip("+"), text, "binding")

    def _revoked(self, binding_id: str, by: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT * FROM payapp_bindings WHERE id = ?", (binding_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such binding")
        if row["status"] == "active":
            self.conn.execute(
                "UPDATE payapp_bindings SET status = 'revoked', revoked_by = ? WHERE id = ?",
                (by, binding_id),
            )
            self._notify(
                row["person_id"],
                f"Your bank: account {mask_account(row['account_id'])} is no longer bound"
                f" to payment app user {row['app_user']}.",
            )
        return {"binding_id": binding_id, "status": "revoked"}

    def revoke(self, person_id: str, binding_id: str) -> dict[str, Any]:
        """The customer revokes at the bank; the payment server is told (outbox)."""
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT status FROM payapp_bindings WHERE id = ? AND person_id = ?",
                (binding_id, person_id),
            ).fetchone()
            if row is None:
                raise NotFound("no such binding of this customer")
            if row["status"] == "active":
                self._revoked(binding_id, "bank")
                outbox.enqueue(
                    self.conn,
                    "binding",
                    {"type": "revoke", "binding_id": binding_id},
                    PAYAPP,
                    clock=self.clock,
                )
        self._queued()
        return {"binding_id": binding_id, "status": "revoked"}
