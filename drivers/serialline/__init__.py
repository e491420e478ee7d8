"""Declarative line-protocol gauges on a serial port (request/response or free-running)."""
