"""The carrier (mobile operator) location service simulator, for terminals without GPS
or a fixed site (seed 003). Lookups must be signed by the bank's host."""

from sim.carrier.server import CarrierService, serve
from sim.carrier.table import CellLocation, default_location, load_table

__all__ = ["CarrierService", "CellLocation", "default_location", "load_table", "serve"]
