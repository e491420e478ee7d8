"""Config models of the Modbus driver: a bus (TCP endpoint or serial port), its devices, their points."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.shared import ReportPolicy, Seconds, StrictModel

DataType = Literal[
    "bool", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"
]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Table = Literal["holding", "input", "coil", "discrete"]

REGISTERS_PER_TYPE: dict[str, int] = {
    "bool": 1, "uint16": 1, "int16": 1, "uint32": 2, "int32": 2,
    "float32": 2, "uint64": 4, "int64": 4, "float64": 4,
}


class PointConfig(StrictModel):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="point id, unique in the site")
    table: Table = "holding"
    address: int = Field(ge=0, le=65535, description="0-based register or coil address as sent on the wire")
    type: DataType = "uint16"
    byte_order: ByteOrder = Field(
        default="ABCD",
        description="ABCD big-endian; CDAB word-swapped; BADC byte-swapped; DCBA little-endian",
    )
    bit: int | None = Field(default=None, ge=0, le=15, description="read one bit of a 16-bit register")
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    valid_min: float | None = Field(default=None, description="below this the reading is out_of_range")
    valid_max: float | None = None
    report: ReportPolicy = Field(default_factory=ReportPolicy)

    @property
    def register_count(self) -> int:
        if self.table in ("coil", "discrete"):
            return 1
        return REGISTERS_PER_TYPE[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> PointConfig:
        if self.table in ("coil", "discrete") and self.type != "bool":
            raise ValueError(f"{self.table} points are single bits: use type: bool")
        if self.bit is not None and self.type not in ("bool", "uint16"):
            raise ValueError("bit: selects one bit of a 16-bit register; use type: bool")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("the point runs past register 65535")
        if self.valid_min is not None and self.valid_max is not None and self.valid_min > self.valid_max:
            raise ValueError("valid_min is greater than valid_max")
        return self


class DeviceConfig(StrictModel):
    name: str = Field(min_length=1)
    unit_id: int = Field(default=1, ge=0, le=247, description="Modbus unit (slave) id")
    poll_interval: Seconds = 5.0
    timeout: Seconds = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    max_block: int = Field(default=100, ge=1, le=125, description="most registers read in one request")
    max_gap: int = Field(default=10, ge=0, le=100, description="unused registers read to join two blocks")
    points: list[PointConfig] = Field(min_length=1)


class _BusBase(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    devices: list[DeviceConfig] = Field(min_length=1)
    reconnect_min: Seconds = 1.0
    reconnect_max: Seconds = 60.0

    @model_validator(mode="after")
    def _unique(self) -> _BusBase:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name '{device.name}' is used twice on bus '{self.name}'")
            seen.add(device.name)
        return self


class ModbusTcpBus(_BusBase):
    """A Modbus TCP endpoint, or a serial server speaking RTU over TCP (framer: rtu)."""

    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    framer: Literal["socket", "rtu"] = Field(default="socket", description="rtu = RTU-over-TCP serial server")


class ModbusRtuBus(_BusBase):
    """An RS-485 (or RS-232) serial line with one or more units on it."""

    type: Literal["modbus_rtu"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/fieldgate/rs485-XYZ")
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    framer: Literal["rtu", "ascii"] = "rtu"
