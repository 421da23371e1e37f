"""The bank host simulator: ISO 8583 server, ledger, business rules."""
