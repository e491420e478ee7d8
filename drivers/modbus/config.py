"""Config models of the Modbus driver: a bus (TCP endpoint or serial port), its devices, their points."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from drivers.ports.settings import RS485Options, char_time
from gateway.shared import ReportPolicy, Seconds, StrictModel

DataType = Literal[
    "bool", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64", "string"
]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Table = Literal["holding", "input", "coil", "discrete"]

REGISTERS_PER_TYPE: dict[str, int] = {
    "bool": 1, "uint16": 1, "int16": 1, "uint32": 2, "int32": 2,
    "float32": 2, "uint64": 4, "int64": 4, "float64": 4,
}
INTEGER_TYPES = ("uint16", "int16", "uint32", "int32", "uint64", "int64")


class PointConfig(StrictModel):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="point id, unique in the site")
    table: Table = "holding"
    address: int = Field(ge=0, le=65535, description="0-based register or coil address as sent on the wire")
    type: DataType = "uint16"
    byte_order: ByteOrder = Field(
        default="ABCD",
        description="ABCD big-endian; CDAB word-swapped; BADC byte-swapped; DCBA little-endian",
    )
    length: int | None = Field(default=None, ge=1, le=64, description="registers of a string point (2 chars each)")
    bit: int | None = Field(default=None, ge=0, le=63, description="lowest bit of a bit field (or the one bit read)")
    bit_width: int = Field(default=1, ge=1, le=32, description="bits in the field starting at bit:")
    enum: dict[int, str] | None = Field(default=None, description="raw integer → label; other values: out_of_range")
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    valid_min: float | None = Field(default=None, description="below this the reading is out_of_range")
    valid_max: float | None = None
    priority: bool = Field(default=False, description="used by alarm rules: polled before ordinary points")
    report: ReportPolicy = Field(default_factory=ReportPolicy)

    @property
    def register_count(self) -> int:
        if self.table in ("coil", "discrete"):
            return 1
        if self.type == "string":
            return self.length or 1
        return REGISTERS_PER_TYPE[self.type]

    @property
    def writable(self) -> bool:
        return self.table in ("holding", "coil") and self.enum is None and self.bit is None

    @model_validator(mode="after")
    def _consistent(self) -> PointConfig:
        if self.table in ("coil", "discrete") and self.type != "bool":
            raise ValueError(f"{self.table} points are single bits: use type: bool")
        if self.type == "string" and self.length is None:
            raise ValueError("a string point needs length: (registers, two characters each)")
        if self.type != "string" and self.length is not None:
            raise ValueError("length: is only for type: string")
        if self.bit is not None:
            if self.type == "bool" and self.bit > 15:
                raise ValueError("bit: of a bool point selects one bit of a 16-bit register (0..15)")
            if self.type not in ("bool", *INTEGER_TYPES):
                raise ValueError("bit: selects bits of an integer register; use type: bool or an integer type")
            if self.type != "bool" and self.bit + self.bit_width > 16 * REGISTERS_PER_TYPE[self.type]:
                raise ValueError(f"bit field {self.bit}+{self.bit_width} runs past the {self.type}")
        elif self.bit_width != 1:
            raise ValueError("bit_width: needs bit: (the lowest bit of the field)")
        if self.enum is not None and self.type not in INTEGER_TYPES:
            raise ValueError("enum: maps integer values to labels; use an integer type")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("the point runs past register 65535")
        if self.valid_min is not None and self.valid_max is not None and self.valid_min > self.valid_max:
            raise ValueError("valid_min is greater than valid_max")
        if self.scale == 0:
            raise ValueError("scale: 0 would turn every value into the offset")
        return self


class DeviceConfig(StrictModel):
    name: str = Field(min_length=1)
    unit_id: int = Field(default=1, ge=0, le=247, description="Modbus unit (slave) id")
    poll_interval: Seconds = 5.0
    timeout: Seconds = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    max_block: int = Field(default=100, ge=1, le=125, description="most registers read in one request")
    max_gap: int = Field(default=10, ge=0, le=100, description="unused registers read to join two blocks")
    coalesce: bool = Field(default=True, description="quirk: false = one request per point (devices that "
                                                    "reject reads spanning unmapped registers)")
    write_multiple: bool = Field(default=False, description="quirk: write with FC15/FC16 even for one "
                                                            "coil/register (devices without FC05/FC06)")
    offline_after: int = Field(default=3, ge=1, le=100,
                               description="silent polls in a row before offline (a garbled reply does not count)")
    probe_max: Seconds = Field(default=60.0, gt=0, description="longest interval between probes when offline")
    priority: bool = Field(default=False, description="every point of this device is an alarm input")
    points: list[PointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_points(self) -> DeviceConfig:
        seen: set[str] = set()
        for point in self.points:
            if point.id in seen:
                raise ValueError(f"point id '{point.id}' is used twice in device '{self.name}'")
            seen.add(point.id)
        return self


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
    """A Modbus TCP endpoint, or a serial server passing RTU (or ASCII) frames over TCP."""

    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    framer: Literal["socket", "rtu", "ascii"] = Field(
        default="socket", description="socket = Modbus TCP (MBAP); rtu/ascii = serial frames over TCP"
    )


class ModbusRtuBus(_BusBase):
    """An RS-485 (or RS-232) serial line with one or more units on it."""

    type: Literal["modbus_rtu"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/fieldgate/rs485-XYZ")
    baud: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    framer: Literal["rtu", "ascii"] = "rtu"
    frame_gap_margin: Seconds = Field(
        default=0.002, le=1.0, description="added to the 3.5-character silence between frames"
    )
    rs485: RS485Options | None = Field(default=None, description="half-duplex driver control, if the port has it")

    @model_validator(mode="after")
    def _framing(self) -> ModbusRtuBus:
        if self.framer == "rtu" and self.bytesize != 8:
            raise ValueError("Modbus RTU needs 8 data bits (7 is for ASCII framing)")
        return self


def inter_frame_gap(baud: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Modbus RTU t3.5 in seconds; the spec fixes it at 1.75 ms above 19200 baud."""
    if baud > 19200:
        return 0.00175
    return 3.5 * char_time(baud, bytesize, parity, stopbits)
