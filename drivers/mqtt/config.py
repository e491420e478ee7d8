"""Config model of the MQTT 5 link."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.shared import Seconds, StrictModel


class MqttTls(StrictModel):
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    key_file: Path | None = Field(default=None, description="client private key (PEM)")
    check_hostname: bool = True


class MqttLinkConfig(StrictModel):
    type: Literal["mqtt"]
    name: str = Field(default="mqtt", pattern=r"^[A-Za-z0-9_.-]+$")
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, description="defaults to fieldgate-<gateway id>")
    username: str | None = None
    password_file: Path | None = Field(default=None, description="file holding the password (not in YAML)")
    tls: MqttTls | None = None
    keepalive: Seconds = Field(default=30.0, ge=5)
    topic_prefix: str = Field(default="fieldgate/v1", description="topics are <prefix>/<gateway id>/<kind>")
    max_inflight: int = Field(default=8, ge=1, le=100, description="QoS 1 messages awaiting PUBACK")
    batch_records: int = Field(default=200, ge=1, le=5000, description="most readings in one message")
    session_expiry: Seconds = Field(default=7 * 86400.0, description="broker keeps our command queue this long")
    will_delay: Seconds = Field(default=10.0, description="offline status waits this long after a drop")
    reconnect_min: Seconds = Field(default=1.0, gt=0)
    reconnect_max: Seconds = Field(default=60.0, gt=0)
    classes: list[Literal["alarm", "evidence", "event", "state", "telemetry", "bulk"]] = Field(
        default=["alarm", "evidence", "event", "state", "telemetry", "bulk"],
        description="journal classes this link carries",
    )
