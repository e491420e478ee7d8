"""What a serial port is opened with, and how long one character takes on its wire.

Pure data: no pyserial here, so the config models of the buses can use ``RS485Options``
without loading the serial stack (``fieldgate validate`` runs on a desktop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.shared import Seconds, StrictModel

WRITE_TIMEOUT = 2.0  # seconds a write may wait for the kernel to take it before the port counts as lost


def bits_per_char(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Bits one character occupies on the wire: start + data + parity + stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def char_time(baud: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character takes on the wire at ``baud``."""
    return bits_per_char(bytesize, parity, stopbits) / baud


class RS485Options(StrictModel):
    """Kernel RS-485 half-duplex driving (TIOCSRS485); ignored with a log line where unsupported."""

    rts_level_for_tx: bool = True
    rts_level_for_rx: bool = False
    delay_before_tx: Seconds | None = None
    delay_before_rx: Seconds | None = None
    loopback: bool = False


class SerialBusConfig(Protocol):
    """The serial fields a bus config carries (``ModbusRtuBus``, ``SerialLineBus``), named as in its YAML."""

    @property
    def port(self) -> str: ...
    @property
    def baud(self) -> int: ...
    @property
    def parity(self) -> str: ...
    @property
    def stopbits(self) -> int: ...
    @property
    def bytesize(self) -> int: ...
    @property
    def rs485(self) -> RS485Options | None: ...


@dataclass(frozen=True, slots=True)
class SerialSettings:
    port: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    rs485: RS485Options | None = None
    exclusive: bool = True  # flock: a technician tool (or a second gateway) cannot talk over this one
    write_timeout: float = WRITE_TIMEOUT

    @classmethod
    def of_bus(cls, bus: SerialBusConfig) -> SerialSettings:
        return cls(bus.port, bus.baud, bus.parity, bus.stopbits, bus.bytesize, bus.rs485)

    @property
    def char_time(self) -> float:
        return char_time(self.baud, self.bytesize, self.parity, self.stopbits)
