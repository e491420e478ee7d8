"""A Modbus TCP relay board (coils + discrete inputs) with a "stuck relay" fault and a slow mode.

Used by tests/hil and bench/alarm_latency.py, served in the caller's event loop. A stuck coil acknowledges
writes but keeps its state, exactly what a welded or dead relay looks like from the Modbus side.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from sim.support import free_port

WRITE_COIL_CODES = (5, 15)


class SimRelayBoard:
    def __init__(self, device_id: int = 1, coils: int = 16, host: str = "127.0.0.1", port: int = 0) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port or free_port(host)
        self.stuck: set[int] = set()
        self.writes: list[tuple[int, bool]] = []  # (coil, value) as requested, bounded below
        self.delay_s = 0.0  # a slow board: every request waits this long before it is served
        self._coils = coils

        device = SimDevice(
            id=device_id,
            simdata=(
                [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
                [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self.server = ModbusTcpServer(device, address=(host, self.port))

    async def _action(
        self, function_code: int, start_address: int, address: int, count: int,
        current_registers: list[int], set_values: Any,
    ) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if function_code in WRITE_COIL_CODES and set_values is not None:
            for i in range(len(set_values)):
                coil = address + i
                if len(self.writes) < 10_000:
                    self.writes.append((coil, bool(set_values[i])))
                if coil in self.stuck:
                    offset = coil - start_address
                    set_values[i] = bool((current_registers[offset // 16] >> (offset % 16)) & 1)
        return None

    async def start(self) -> None:
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        await self.server.shutdown()  # type: ignore[no-untyped-call]
