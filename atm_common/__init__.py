"""The foundation every other package of this repository stands on.

It imports nothing of the repository (checked by import-linter in ``make lint``), only the
standard library and ``cryptography`` (plus numpy/OpenCV/face_recognition for the optional
:mod:`atm_common.face`). What lives here is what both sides of the wire need and neither
side owns: the root of the exception tree and its cross-cutting categories, the injected
clock, money formatting, masking of PANs and phone numbers, the payment cryptography, and
face templates.
"""
