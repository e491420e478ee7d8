"""The ``status:`` section of the site config: where the technician's status page listens."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from gateway.shared import Seconds, StrictModel


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
                                 description="open connections beyond this are closed at once")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]
