"""Clients of the bank's online banking (enterprise users and administrators)."""
