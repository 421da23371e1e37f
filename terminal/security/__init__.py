"""Cryptographic building blocks: PIN blocks and PIN verification data.

Primitives come from ``cryptography``; nothing here implements a cipher itself.
"""
