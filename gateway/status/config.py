"""The ``status:`` section of the site config: where the technician's status page listens."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.shared import Seconds, StrictModel
from gateway.status.guard import normalize_host

# Where install.sh puts the self-signed pair it makes for the box (deploy/raspberrypi/install.sh).
DEFAULT_CERT = Path("/etc/fieldgate/status-tls/cert.pem")
DEFAULT_KEY = Path("/etc/fieldgate/status-tls/key.pem")


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port). Raises ValueError with a readable reason."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen '{listen}' must be host:port, e.g. 0.0.0.0:8080 or [::]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError when it is not one
    elif ":" in host:
        raise ValueError(f"listen '{listen}': write an IPv6 address in brackets, e.g. [::1]:8080")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"listen '{listen}': port must be 1..65535")
    return host, int(port_text)


class StatusTls(StrictModel):
    """HTTPS for the page. ``tls: {}`` uses the self-signed pair install.sh made for this box."""

    cert_file: Path = Field(default=DEFAULT_CERT, description="server certificate chain (PEM), leaf first")
    key_file: Path = Field(default=DEFAULT_KEY, description="its private key (PEM), readable by the daemon")


class StatusConfig(StrictModel):
    """The status page, /metrics, /healthz and /api/status, served by the daemon itself."""

    listen: str = Field(
        default="127.0.0.1:8080",
        description="host:port; 0.0.0.0:8080 serves the LAN, the default only this box",
    )
    users_file: Path | None = Field(
        default=None,
        description="lines of user:hash (see `fieldgate status passwd`); without it nobody can log in "
        "and the page stays read-only",
    )
    session_ttl: Seconds = Field(default=4 * 3600.0, gt=0, le=7 * 86400.0,
                                 description="how long a login lasts")
    max_connections: int = Field(default=32, ge=1, le=1024,
                                 description="open connections of all clients together; more are refused "
                                 "with 503 (except /healthz, see healthz_reserve)")
    max_connections_per_client: int = Field(default=8, ge=1, le=1024,
                                            description="open connections of one client address")
    healthz_reserve: int = Field(default=2, ge=1, le=16,
                                 description="extra connections that answer only /healthz, one per client, "
                                 "so a health probe still answers when the connections above are taken")
    hosts: list[str] = Field(default_factory=list, max_length=32,
                             description="names (or addresses) the page is reached by besides the box's own "
                             "addresses, localhost and its host name; other Host headers get 421")
    language: Literal["auto", "en", "zh-CN"] = Field(
        default="auto", description="the page's language; auto follows the browser (Accept-Language). Also the "
        "default of `fieldgate status --config` and of `fieldgate validate` on this file")
    tls: StatusTls | None = Field(default=None, description="serve HTTPS; recommended whenever listen is not "
                                  "a loopback address (passwords and the session cookie cross the network)")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        return [normalize_host(name) for name in value]

    @property
    def loopback_only(self) -> bool:
        host = self.host
        return host == "localhost" or host.startswith("127.") or host == "::1"

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def status_warnings(config: StatusConfig) -> list[str]:
    """What `fieldgate validate` warns about: a LAN page without TLS, TLS files this machine cannot read."""
    if config.tls is None:
        if config.loopback_only:
            return []
        return [f"listen {config.listen} without tls: passwords and the session cookie cross the network in clear "
                "(add `tls: {}`, docs/status.md)"]
    found = []
    for what, path in (("cert_file", config.tls.cert_file), ("key_file", config.tls.key_file)):
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            found.append(f"tls.{what} {path}: {exc.strerror or exc}")
    return found
