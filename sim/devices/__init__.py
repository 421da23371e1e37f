"""Device emulators that speak the real wire protocols, on ptys or in-process (sim://)."""
