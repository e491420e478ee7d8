"""A relay coil on a Modbus board, driven with pymodbus's *synchronous* client.

Why synchronous: the siren's cadence and its auto-off run in their own threads so that a
busy or stalled event loop can never hold a siren on. Every request is serialised by one
lock (a Modbus master must not interleave requests) and bounded by the client timeout.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping
from typing import Any

from drivers.broadcast.base import Relay, RelayError
from drivers.broadcast.busboard import BusRelayCoil, CoilWriter
from drivers.broadcast.config import BoardAutoOffConfig, ModbusBoardConfig, RelayCoilConfig

__all__ = ["RelayCoil", "RelayError", "make_relay"]


def _make_client(board: ModbusBoardConfig) -> Any:
    # pymodbus (~2 MB resident) only for a board of its own; a board on a running bus (BusRelayCoil) needs none.
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    if board.transport == "tcp":
        return ModbusTcpClient(board.host, port=board.port, timeout=board.timeout, retries=0)
    return ModbusSerialClient(
        str(board.serial_port),
        baudrate=board.baud,
        parity=board.parity,
        stopbits=board.stopbits,
        timeout=board.timeout,
        retries=0,
    )


class RelayCoil:
    can_read = True

    def __init__(self, config: RelayCoilConfig) -> None:
        self.config = config
        self._client: Any = _make_client(config.board)
        from pymodbus.exceptions import ModbusException  # loaded with the client above

        # Anything the client raises is "no usable answer": the siren threads only handle RelayError,
        # and an escaping exception would end a cadence or a backstop.
        self._no_answer = (ModbusException, OSError, ValueError, TypeError, IndexError, AttributeError)
        self._lock = threading.Lock()
        # Upper bound for waiting on the lock: one request in flight at most, plus a margin.
        self._lock_timeout = 3 * config.board.timeout + 1.0

    def _call(self, what: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise RelayError(f"{what}: board busy (lock not acquired)")
        try:
            if not self._client.connected and not self._client.connect():
                raise RelayError(f"{what}: cannot connect to the relay board")
            try:
                response = getattr(self._client, fn)(*args, device_id=self.config.board.device_id, **kwargs)
                if response.isError():
                    raise RelayError(f"{what}: board answered with an exception ({response})")
                if fn.startswith("read_") and not response.bits:
                    raise RelayError(f"{what}: reply without bits")
            except RelayError:
                raise
            except self._no_answer as exc:
                self._client.close()  # reconnect next time: the stream may be out of step
                raise RelayError(f"{what}: {exc!r}") from exc
            return response
        finally:
            self._lock.release()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Its own client and lock: independent of any event loop."""

    def write(self, on: bool) -> None:
        self._call(f"write coil {self.config.coil}={int(on)}", "write_coil", self.config.coil, on)

    def read_back(self) -> bool | None:
        """The relay's proven state, or None when this relay has no read-back configured."""
        if self.config.readback == "none":
            return None
        at = self.config.readback_at
        if self.config.readback == "coil":
            response = self._call(f"read coil {at}", "read_coils", at, count=1)
        else:
            response = self._call(f"read discrete input {at}", "read_discrete_inputs", at, count=1)
        return bool(response.bits[0])

    def switch(self, on: bool) -> bool | None:
        """Write then read back. Returns the read-back (None without read-back)."""
        self.write(on)
        return self.read_back()

    def arm_board_auto_off(self, auto_off: BoardAutoOffConfig, seconds: float) -> None:
        value = min(auto_off.max_value, max(1, math.ceil(seconds / auto_off.time_unit)))
        at = auto_off.register_address
        self._call(f"write auto-off register {at}", "write_register", at, value)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def make_relay(config: RelayCoilConfig, coil_writers: Mapping[str, CoilWriter] | None = None,
               auto_off: BoardAutoOffConfig | None = None) -> Relay:
    """Own client for tcp/serial boards; the bus's writer for a board on a polled line."""
    if config.board.transport != "bus":
        return RelayCoil(config)
    writer = (coil_writers or {}).get(str(config.board.bus))
    if writer is None:
        raise ValueError(f"relay board on bus '{config.board.bus}': the daemon gave no coil writer for that bus "
                         "(build_outputs(..., buses=..., bus_configs=...))")
    return BusRelayCoil(config, writer, auto_off)
