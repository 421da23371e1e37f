"""The one way to show a PAN or a phone number: to a screen, a log, a receipt or a report.

A PAN is never shown beyond its first 6 and last 4 digits (PCI DSS 3.4); a phone number
keeps its country code and last 4 digits, enough for a customer to recognise their own.
"""

from __future__ import annotations


def mask_pan(pan: str) -> str:
    """First 6 / last 4, the most a PAN may ever be shown or logged; short ones fully hidden."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


def mask_track2(track2: str) -> str:
    """Track 2 equivalent data: the PAN masked as above, everything after ``=`` hidden."""
    pan = track2.split("=")[0]
    return f"{mask_pan(pan)}=****"


def mask_phone(phone: str) -> str:
    """``+CCC`` (up to the first 3 digits) and the last 4; the rest starred.

    Accepts a number with or without its leading ``+``; a number of 7 digits or fewer
    shows only its last 4.
    """
    digits = phone.lstrip("+")
    if len(digits) <= 7:
        return "*" * max(0, len(digits) - 4) + digits[-4:]
    return f"+{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_account(account: str) -> str:
    """An account number as a payment app or a notice shows it: only its last 4 characters."""
    if len(account) <= 4:
        return "*" * len(account)
    return "*" * (len(account) - 4) + account[-4:]


def mask_user(user: str) -> str:
    """Another service's user name as the bank may keep it: first and last character."""
    if len(user) <= 2:
        return "*" * len(user)
    return f"{user[0]}{'*' * (len(user) - 2)}{user[-1]}"
