"""Joint (co-managed) accounts at the bank host (``docs/joint-accounts.md``).

An account bound to several co-owners: every operation on it carries the account's
password and the requester's own code (the code's match names the co-owner asking), is
granted only once another co-owner approves it on the phone, and ends with a bill to
every co-owner. Too many failed verifications lock the account and tell every co-owner;
a new co-owner is bound only when every existing one has authorised it.

Modules, from the bottom up:

- :mod:`.schema`: the tables.
- :mod:`.setup`: the seed's ``[joint]`` settings and ``[[joint_accounts]]``.
- :mod:`.notices`: refusals (ISO code and HTTP status) and notices to co-owners.
- :mod:`.core`: the simulated core-banking accounting step (points) and the bill.
- :mod:`.book`: :class:`JointBook`, verification, failures and lock, approvals, binding.
- :mod:`.iso`: :class:`JointDesk`, the authoriser's hook for the ATM's requests.
- :mod:`.phone`: :class:`JointPhone`, the co-owners' app steps; :mod:`.api` its routes.
- :mod:`.admin`: the bank's back office (``atm joint-unlock``).
"""
