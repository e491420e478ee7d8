"""Settings of the payload profiles, configured on an MQTT link (``thingsboard:``) but owned by the profile.

Imports nothing from the core but gateway.shared, so the MQTT driver's config model may embed it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from gateway.shared import PlainText, StrictModel


class ThingsboardOptions(StrictModel):
    """How fieldgate points map to ThingsBoard devices (profile: thingsboard)."""

    device_of_point: dict[str, Annotated[PlainText, Field(min_length=1, max_length=255)]] = Field(
        default_factory=dict,
        description="point id → device; such a point keeps its full id as the telemetry key",
    )
    device_separator: PlainText = Field(
        default=".", min_length=1, max_length=4,
        description="otherwise the text before the first separator is the device and the rest is the key",
    )
    device_name: PlainText = Field(
        default="{gateway}.{device}", max_length=255,
        description="ThingsBoard device name; {gateway} is the gateway id, {device} the mapped device",
    )
    device_type: PlainText | None = Field(
        default=None, max_length=255, description="ThingsBoard device profile sent with v1/gateway/connect"
    )
    quality_suffix: PlainText = Field(
        default="_quality", min_length=1, max_length=64, description="key suffix of the quality sent beside a value"
    )

    @model_validator(mode="after")
    def _template(self) -> ThingsboardOptions:
        if "{device}" not in self.device_name:
            raise ValueError("device_name must contain {device}")
        try:
            self.device_name.format(gateway="g", device="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"device_name may only use {{gateway}} and {{device}}: {exc}") from None
        return self
