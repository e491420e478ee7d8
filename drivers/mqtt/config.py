"""Config model of the MQTT 5 link.

Secrets (CA, client certificate and key, username, password) are never written in the
YAML: each is a file path or the name of a systemd credential, which the service
manager copies into ``$CREDENTIALS_DIRECTORY`` (see deploy/raspberrypi/fieldgate.service,
``LoadCredential=tls-ca.pem:…``). Files are read when the link connects, so a renewed
certificate is picked up at the next reconnect without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.profiles.options import ThingsboardOptions
from gateway.shared import (
    RECORD_CLASS_NAMES,
    Name,
    PayloadProfileName,
    PlainText,
    RecordClassName,
    Seconds,
    StrictModel,
    TopicPrefix,
)

# A systemd credential name: a plain file name inside $CREDENTIALS_DIRECTORY, never a path.
CREDENTIAL_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,254}$"


def _one_source(what: str, path: Path | None, credential: str | None) -> None:
    if path is not None and credential is not None:
        raise ValueError(f"give either {what}_file or {what}_credential, not both")


class MqttTls(StrictModel):
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    ca_credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="systemd credential holding the CA bundle (tls-ca.pem)"
    )
    cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    cert_credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="systemd credential holding the client certificate"
    )
    key_file: Path | None = Field(default=None, description="client private key (PEM)")
    key_credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="systemd credential holding the client private key"
    )
    check_hostname: bool = Field(
        default=True, description="verify that the broker certificate names the host; off only for lab brokers"
    )
    min_version: Literal["1.2", "1.3"] = Field(default="1.2", description="lowest TLS version accepted")

    @model_validator(mode="after")
    def _consistent(self) -> MqttTls:
        _one_source("ca", self.ca_file, self.ca_credential)
        _one_source("cert", self.cert_file, self.cert_credential)
        _one_source("key", self.key_file, self.key_credential)
        has_cert = self.cert_file is not None or self.cert_credential is not None
        has_key = self.key_file is not None or self.key_credential is not None
        if has_key and not has_cert:
            raise ValueError("a client key needs a client certificate (cert_file or cert_credential)")
        return self


class MqttLinkConfig(StrictModel):
    type: Literal["mqtt"]
    name: Name = "mqtt"
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: PlainText | None = Field(default=None, min_length=1, max_length=128,
                                        description="defaults to fieldgate-<gateway id>")
    username: str | None = None
    username_file: Path | None = Field(default=None, description="file holding the username (a ThingsBoard token)")
    username_credential: str | None = Field(default=None, pattern=CREDENTIAL_NAME)
    password_file: Path | None = Field(default=None, description="file holding the password (not in YAML)")
    password_credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="systemd credential holding the password"
    )
    tls: MqttTls | None = None
    keepalive: Seconds = Field(default=30.0, ge=5, le=65535)
    profile: PayloadProfileName = Field(default="fieldgate", description="payload profile")
    thingsboard: ThingsboardOptions = Field(default_factory=ThingsboardOptions)
    topic_prefix: TopicPrefix = Field(default="fieldgate/v1", description="topics are <prefix>/<gateway id>/<kind>")
    max_inflight: int = Field(default=8, ge=1, le=100, description="QoS 1 messages awaiting PUBACK")
    batch_records: int = Field(default=200, ge=1, le=5000, description="most readings in one message")
    session_expiry: Seconds = Field(
        default=7 * 86400.0, le=0xFFFFFFFE, description="broker keeps our command queue this long"
    )
    will_delay: Seconds = Field(default=10.0, le=0xFFFFFFFF, description="offline status waits this long after a drop")
    reply_expiry: Seconds = Field(default=300.0, le=0xFFFFFFFF, description="default expiry of command replies")
    reconnect_min: Seconds = Field(default=1.0, gt=0)
    reconnect_max: Seconds = Field(default=60.0, gt=0)
    reconnect_fast_window: Seconds = Field(default=120.0, ge=0, description=(
        "after a loss, probe the broker every reconnect_min/2..reconnect_min for this long, then back off "
        "(doubling, jittered) up to reconnect_max; 0 = back off at once"))
    classes: list[RecordClassName] = Field(
        default=list(RECORD_CLASS_NAMES),
        description="journal classes this link carries",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttLinkConfig:
        if self.username is not None and (self.username_file is not None or self.username_credential is not None):
            raise ValueError("give the username once: username, username_file or username_credential")
        _one_source("username", self.username_file, self.username_credential)
        _one_source("password", self.password_file, self.password_credential)
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self
