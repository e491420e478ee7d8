"""Config of the BeiDou RDSS short-message link (one serial module)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.shared import Name, SatellitePolicy, Seconds, StrictModel


class BeidouConfig(StrictModel):
    type: Literal["beidou"]
    name: Name = "beidou"
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB1")
    baud: int = Field(19200, gt=0)
    dialect: Literal["auto", "2.1", "bds3", "4.0"] = Field(
        "auto", description="auto probes $CCICA, then $CCICR, then $ICJC; vendor labels are unreliable"
    )
    dest: int = Field(ge=0, lt=2**21, description="BeiDou card id of the receiving (platform) terminal")
    platform_cards: list[Annotated[int, Field(ge=0, lt=2**21)]] = Field(
        default_factory=list, description="cards whose messages are taken (ACKs, commands); empty: dest only"
    )
    encoding: Literal["code", "mixed"] = Field(
        "mixed", description="mixed = 0xA4 marker + payload; the 77-byte level-3 budget assumes it"
    )
    info_category: int | None = Field(
        None, ge=0, le=255,
        description="4.0 $TXSQ information category byte; default per dialect: 0x46 for 4.0 (the text dialects "
                    "have none); some modules and command receivers expect 0x42 (docs/satellite.md §3)",
    )
    max_bytes: int | None = Field(
        None, ge=1, le=1750, description="payload limit; default from the card's communication level"
    )
    interval: Annotated[Seconds, Field(gt=0, le=3600)] | None = Field(
        None, description="service interval; default read from the card"
    )
    freq_point: int = Field(2, ge=1, le=5, description="BDS-3 $CCTCQ frequency point")
    probe_timeout: Seconds = Field(2.0, gt=0, le=30)
    feedback_timeout: Seconds = Field(10.0, gt=0, le=120)
    max_wait_retries: int = Field(3, ge=0, le=10, description="resends after 'frequency not reached'")
    reopen_delay: Seconds = Field(5.0, gt=0, le=600)
    policy: SatellitePolicy = Field(
        default_factory=SatellitePolicy, description="fallback scheduling (gateway/satellite.py)"
    )

    @property
    def senders(self) -> frozenset[int]:
        """Cards an incoming message may come from: anyone with a card can send to ours."""
        return frozenset(self.platform_cards or [self.dest])
