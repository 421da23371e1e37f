"""A third-party payment company, simulated: its server (``atm payapp-server``, own
database, HTTP API) and its app (``atm payapp ...``), for binding bank accounts by QR
code or pushed message (docs/binding.md). It shares no code path with the bank's host
beyond the generic durable outbox and the signed-request helpers."""
