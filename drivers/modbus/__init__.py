"""Modbus RTU / TCP / RTU-over-TCP field-bus driver (pymodbus 3)."""
