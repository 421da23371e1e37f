"""Supervisor mode: roles, cash exchange and balancing, device status list, reports."""
