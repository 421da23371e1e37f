"""Chaos soak: many headless sessions with faults injected, then money conservation checks."""
