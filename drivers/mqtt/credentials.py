"""Where the MQTT link's secrets come from (the lookup itself is gateway/credentials.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivers.mqtt.config import MqttLinkConfig, MqttTls
from gateway.credentials import CredentialError, check_readable, locate, read_secret


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path | None
    cert: Path | None
    key: Path | None


def tls_files(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> TlsFiles | None:
    """Resolve and check the TLS files; raises CredentialError naming the first bad one."""
    return tls_files_of(config.tls, environ)


def tls_files_of(tls: MqttTls | None, environ: dict[str, str] | None = None) -> TlsFiles | None:
    """The same for a ``tls:`` section used elsewhere (the centre bridge's broker)."""
    if tls is None:
        return None
    files = TlsFiles(
        ca=locate("CA certificate", tls.ca_file, tls.ca_credential, environ),
        cert=locate("client certificate", tls.cert_file, tls.cert_credential, environ),
        key=locate("client key", tls.key_file, tls.key_credential, environ),
    )
    for what, path in (("CA certificate", files.ca), ("client certificate", files.cert), ("client key", files.key)):
        if path is not None:
            check_readable(what, path)
    return files


def login(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(username, password) as configured; raises CredentialError for an unreadable file."""
    username = config.username
    user_path = locate("username", config.username_file, config.username_credential, environ)
    if user_path is not None:
        username = read_secret("username", user_path)
    password = None
    password_path = locate("password", config.password_file, config.password_credential, environ)
    if password_path is not None:
        password = read_secret("password", password_path)
    return username, password


def problems(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> list[str]:
    """Every secret problem of one link, for `fieldgate validate` and the link's start-up check."""
    found = []
    for check in (tls_files, login):
        try:
            check(config, environ)
        except CredentialError as exc:
            found.append(str(exc))
    return found
