"""Declarative line-protocol gauges on a serial port (request/response or free-running).

``build_bus`` is the factory gateway/registry.py names (the driver loads pyserial only when started).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.serialline.config import SerialLineBus
    from gateway.contracts import BusDriver


def build_bus(config: SerialLineBus) -> BusDriver:
    from drivers.serialline.driver import SerialLineDriver

    return SerialLineDriver(config)
