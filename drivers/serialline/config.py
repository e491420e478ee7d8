"""Config of a serial line gauge: a port, and devices that speak text lines on it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from drivers.ports.settings import RS485Options
from gateway.shared import ReportPolicy, Seconds, StrictModel


class LinePointConfig(StrictModel):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    field: str | int = Field(description="regex group name (pattern:) or 0-based field index (delimiter:)")
    type: Literal["float", "int", "str"] = "float"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    valid_min: float | None = None
    valid_max: float | None = None
    priority: bool = False
    report: ReportPolicy = Field(default_factory=ReportPolicy)

    @model_validator(mode="after")
    def _range(self) -> LinePointConfig:
        if self.valid_min is not None and self.valid_max is not None and self.valid_min > self.valid_max:
            raise ValueError("valid_min is greater than valid_max")
        return self


class LineDeviceConfig(StrictModel):
    name: str = Field(min_length=1)
    mode: Literal["poll", "stream"] = Field(
        default="poll", description="poll: send request, read one reply line; stream: the gauge talks on its own"
    )
    request: str | None = Field(default=None, description="poll string, e.g. \"R\\r\" (YAML escapes apply)")
    poll_interval: Seconds = 5.0
    timeout: Seconds = Field(default=1.0, gt=0, description="poll: reply wait; stream: silence before comm_fail")
    prefix: str | None = Field(default=None, description="lines starting with this belong to this device")
    checksum: Literal["none", "nmea"] = Field(default="none", description="nmea: *hh XOR of the bytes after $")
    pattern: str | None = Field(default=None, description="regular expression with named groups")
    delimiter: str | None = Field(default=None, description="split the line on this; fields by index")
    status_field: str | int | None = Field(default=None, description="field that says whether the data is valid")
    status_ok: list[str] = Field(default_factory=lambda: ["A"], description="status values meaning valid")
    points: list[LinePointConfig] = Field(min_length=1)

    @property
    def unit_id(self) -> None:
        """A gauge on a serial line has no unit address (the core reads unit ids of every bus's devices)."""
        return None

    @model_validator(mode="after")
    def _parsing(self) -> LineDeviceConfig:
        if (self.pattern is None) == (self.delimiter is None):
            raise ValueError("give exactly one of pattern: (regex with named groups) or delimiter:")
        if self.mode == "poll" and not self.request:
            raise ValueError("a poll device needs request: (the string that asks for a reading)")
        if self.mode == "stream" and self.request:
            raise ValueError("a stream device sends nothing: remove request:")
        fields: list[str | int] = [p.field for p in self.points]
        if self.status_field is not None:
            fields.append(self.status_field)
        if self.pattern is not None:
            try:
                groups = set(re.compile(self.pattern).groupindex)
            except re.error as exc:
                raise ValueError(f"pattern: is not a valid regular expression: {exc}") from None
            missing = [f for f in fields if f not in groups]
            if missing:
                raise ValueError(f"pattern: has no named group for field(s) {missing}; use (?P<name>...)")
        elif any(not isinstance(f, int) or f < 0 for f in fields):
            raise ValueError("with delimiter:, field: is a 0-based index")
        return self


class SerialLineBus(StrictModel):
    """A serial port with one free-running gauge, or several polled ones."""

    type: Literal["serial_line"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    port: str
    baud: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    terminator: str = Field(default="\n", min_length=1, description="line end (a trailing \\r is dropped)")
    max_line: int = Field(default=256, ge=16, le=4096, description="longer lines are garbage")
    rs485: RS485Options | None = None
    reconnect_min: Seconds = 1.0
    reconnect_max: Seconds = 60.0
    devices: list[LineDeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _devices(self) -> SerialLineBus:
        modes = {d.mode for d in self.devices}
        if len(modes) > 1:
            raise ValueError("a line is either polled or free-running: do not mix poll and stream devices")
        if len(self.devices) > 1 and any(d.prefix is None for d in self.devices) and modes == {"stream"}:
            raise ValueError("several stream devices on one line need a prefix: each to tell their lines apart")
        names = [d.name for d in self.devices]
        if len(names) != len(set(names)):
            raise ValueError("device names on a line must be unique")
        return self
