"""Config of the Iridium SBD link (9602/9603 or RockBLOCK on a serial port)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.shared import Name, SatellitePolicy, Seconds, StrictModel


class IridiumConfig(StrictModel):
    type: Literal["iridium_sbd"]
    name: Name = "iridium"
    port: str = Field(min_length=1)
    baud: int = Field(19200, gt=0)
    max_bytes: int = Field(340, ge=1, le=340, description="MO payload limit (9602/9603: 340)")
    ring_alerts: bool = Field(True, description="AT+SBDMTA=1; MT fetched on SBDRING, never polled")
    session_attempts: int = Field(3, ge=1, le=20, description="SBDIX tries per send")
    backoff_initial: Seconds = Field(60.0, gt=0, le=3600, description="RockBLOCK: retry after ~1 min")
    backoff_max: Seconds = Field(600.0, gt=0, le=7200)
    command_timeout: Seconds = Field(5.0, gt=0, le=60)
    session_timeout: Seconds = Field(90.0, gt=0, le=300, description="a session takes tens of seconds")
    bytes_per_credit: int = Field(50, ge=1, description="billing unit (unverified: re-check pricing)")
    max_mt_per_ring: int = Field(5, ge=1, le=50, description="bounds credits spent draining a queue")
    reopen_delay: Seconds = Field(5.0, gt=0, le=600)
    policy: SatellitePolicy = Field(
        default_factory=SatellitePolicy, description="fallback scheduling (gateway/satellite.py)"
    )
