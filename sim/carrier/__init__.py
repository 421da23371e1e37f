"""The carrier (mobile operator) location service simulator, for terminals without GPS
or a fixed site (seed 003)."""

from sim.carrier.server import CarrierService, CellLocation, default_location, load_table, serve

__all__ = ["CarrierService", "CellLocation", "default_location", "load_table", "serve"]
