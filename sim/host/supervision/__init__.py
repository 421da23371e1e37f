"""The bank's view of its terminals: device status lists, supervisor mode, cash exchanges."""
