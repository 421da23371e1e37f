"""Customer and supervisor state machines."""
