from tests.host.conftest import clock, host, terminal

__all__ = ["clock", "host", "terminal"]
