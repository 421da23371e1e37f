"""The payment cryptography both ends of the wire need.

TDES and AES primitives come from ``cryptography``; nothing here implements a cipher
itself. The terminal's PIN pad and the bank host both use these modules, which is why
they live in the foundation rather than on either side: PIN blocks (ISO 9564 formats 0
and 4), MACs (ISO 9797-1 algorithm 3, AES-CMAC), DUKPT (ANSI X9.24-1 and -3) and key
check values.
"""
