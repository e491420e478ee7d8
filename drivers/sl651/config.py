"""Config of the ``sl651`` link: the box as one SL 651 station (RTU) reporting to its centres."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.shared import Name, RecordClassName, Seconds, StrictModel

STATION_CLASSES = {"rain": 0x50, "river": 0x48, "reservoir": 0x4B, "sluice": 0x5A, "pump": 0x44, "tidal": 0x54,
                   "soil": 0x4D, "groundwater": 0x47, "quality": 0x51, "intake": 0x49, "outfall": 0x4F}


class CentreAddress(StrictModel):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class Sl651LinkConfig(StrictModel):
    type: Literal["sl651"]
    name: Name = "sl651"
    station: str = Field(pattern=r"^[0-9A-Fa-f]{10}$", description="5-byte station address as 10 hex digits")
    station_class: Literal["rain", "river", "reservoir", "sluice", "pump", "tidal", "soil", "groundwater",
                           "quality", "intake", "outfall"] = "reservoir"
    password: int = Field(default=0, ge=0, le=0xFFFF, description="2-byte password issued by the centre")
    centre: int = Field(ge=1, le=255, description="the centre's address (one link per centre: each its own backlog)")
    primary: CentreAddress = Field(description="the centre's primary channel (Appendix D 04H)")
    backup: CentreAddress | None = Field(default=None, description="tried when the primary does not confirm")
    points: dict[str, str] = Field(description="point id → element code of table C.1 (Z, ZU, PJ, PT, VT…)")
    timed_interval: Seconds = Field(default=300.0, ge=60, le=86400, description="32H timed report period")
    hourly: bool = Field(default=True, description="34H hourly report with the 5-minute lists")
    hourly_rain: str | None = Field(default=None, description="point (accumulated mm) for the F4 5-min rainfall list")
    hourly_level: str | None = Field(default=None, description="point (m) for the F5 5-min relative level list")
    level_base: float = Field(default=0.0, description="F5 relative level = level − level_base (m)")
    added_rules: list[str] = Field(default_factory=list, description="rule ids whose 'raised' sends a 33H")
    classes: list[RecordClassName] = Field(default=["telemetry", "alarm"], description="journal classes it carries")
    confirm_timeout: Seconds = Field(default=10.0, gt=0, le=600, description="wait for a confirmation")
    resends: int = Field(default=2, ge=0, le=5, description="resends after a timeout (the standard: 2)")
    keepalive: Seconds = Field(default=40.0, ge=1, le=255, description="2FH interval while the centre says ESC")
    online_for: Seconds = Field(default=600.0, gt=0, description="stay online after ESC without commands")
    settle: Seconds = Field(default=2.0, ge=0, le=60, description="wait after a period ends for its readings")
    max_inflight: int = Field(default=1000, ge=8, le=10000, description="journal messages held awaiting reports")
    batch_records: int = Field(default=200, ge=1, le=5000)
    max_frame_bytes: int | None = Field(
        default=None, ge=40, le=4095 + 17, description="channel limit (BeiDou: 77); over it, a minimal 32H")

    @field_validator("points")
    @classmethod
    def _known_codes(cls, points: dict[str, str]) -> dict[str, str]:
        from drivers.sl651.elements import BY_CODE, Kind  # the codec's tables: only a site with an SL 651 link

        for point, code in points.items():
            spec = BY_CODE.get(code)
            if spec is None or spec.kind is not Kind.BCD:
                raise ValueError(f"points.{point}: '{code}' is not a decimal element of SL 651 table C.1")
        if len(set(points.values())) != len(points):
            raise ValueError("points: two points map to the same element")
        return points

    @model_validator(mode="after")
    def _hourly_points(self) -> Sl651LinkConfig:
        for what, point in (("hourly_rain", self.hourly_rain), ("hourly_level", self.hourly_level)):
            if point is not None and point not in self.points:
                raise ValueError(f"{what}: '{point}' is not one of the link's points")
        if self.timed_interval % 300:
            raise ValueError("timed_interval: a multiple of 5 minutes (the 5-minute lists are built on that grid)")
        return self

    @property
    def address(self) -> bytes:
        return bytes.fromhex(self.station)

    @property
    def class_byte(self) -> int:
        return STATION_CLASSES[self.station_class]
