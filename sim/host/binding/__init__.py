"""Binding a bank account to a third-party payment app, the bank's side (docs/binding.md).

* :mod:`.schema`: the tables (sessions, bindings);
* :mod:`.desk`: :class:`BindingDesk`, sessions opened with their outbox request, the
  payment server's callbacks, revocations and the customer's notices;
* :mod:`.delivery`: :class:`PayappLink`, the outbox's peer (the payment server);
* :mod:`.api`: the bank app's routes and the callback, on the phone API;
* :mod:`.iso`: the terminal's processing code (card + PIN, then status inquiries).
"""

from sim.host.binding.desk import ADDRESS_SECONDS, PAYAPP, BindingDesk

__all__ = ["ADDRESS_SECONDS", "PAYAPP", "BindingDesk"]
