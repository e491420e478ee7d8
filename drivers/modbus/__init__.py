"""Modbus RTU / TCP / RTU-over-TCP field-bus driver (pymodbus 3).

``build_bus`` is the factory gateway/registry.py names; it imports the bus (and pymodbus) only when a
gateway starts one, so validating a config never loads the hardware libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
    from gateway.contracts import BusDriver


def build_bus(config: ModbusTcpBus | ModbusRtuBus) -> BusDriver:
    from drivers.modbus.bus import ModbusBus

    return ModbusBus(config)
