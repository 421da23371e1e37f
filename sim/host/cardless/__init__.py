"""Cardless cash withdrawal at the bank host (``docs/cardless.md``).

The customer's phone asks for a withdrawal, proves the phone by an SMS code and the
person by a face check against the template enrolled at the bank, picks an account, sees
the fee, confirms. Confirming freezes amount + fee as a *pending transfer* (a hold, never
edited: posted or voided) and creates a reservation that expires. At the ATM the customer
gives the phone number and proves the reserved method (a code typed as a PIN, a face, or
both); the ATM asks (0100, processing code 319000) and then withdraws exactly the
reserved amount (0200, 019000), which posts the hold. Wrong answers count; the one that
reaches the threshold cancels the reservation and voids the hold.

Everything runs on the caller's SQLite connection inside the caller's transaction (the
authoriser's, or the phone API's), so a reservation, its hold, its events and its SMS
commit or roll back together. What must never be stored is not: the reservation code is
kept only as its IBM 3624 offset (like a card PIN), the SMS code only as an HMAC, a face
only as its template.

Modules, from the bottom up (import the names from the module that defines them):

- :mod:`.schema`: the tables, the two GL accounts, the bank-side journal (events).
- :mod:`.errors`: the phone steps' refusals, each with its HTTP status.
- :mod:`.tokens`: how request and reservation ids appear in logs (fingerprints only).
- :mod:`.throttle`: lockout per phone number, throttles per phone, address and ATM.
- :mod:`.faces`: enrolled templates, and the template of a photo from the phone.
- :mod:`.sms`: what the bank texts, the SMS code's HMAC, the simulated gateway and inbox.
- :mod:`.fees`: the accounts a customer may draw on, and pricing one withdrawal.
- :mod:`.reservations`: :class:`ReservationBook`, reserve / close / expire / sweep.
- :mod:`.iso`: :class:`CardlessDesk`, the ATM's ISO 8583 requests on the same book.
- :mod:`.phone`: :class:`PhoneBank`, the phone session's steps for the HTTP API.

Settings (``[cardless]`` in the seed) are plain data in :mod:`sim.host.settings`.
"""
