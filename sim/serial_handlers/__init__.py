"""pyserial URL handlers: pyserial imports ``<package>.protocol_<scheme>`` for a URL."""
