"""The status server's own checks on who may talk to it: Host allow-list, exact Origin, connection slots.

Host: a browser on ``http://evil.example`` whose DNS answer is changed to this box's address (DNS
rebinding) still sends ``Host: evil.example``, so only names and addresses the box answers to are
served: the configured ``status.hosts``, ``localhost`` and the loopback addresses, the box's host
name (and ``<hostname>.local`` for mDNS), the address ``status.listen`` binds when it names one,
and the address of this box the client actually connected to (the socket's own address, so every
interface address works without listing them). The port in Host is not compared: a port forward
may change it.

Origin: state-changing requests (login, logout, actions) must carry an ``Origin`` equal to the
page's own scheme, host and port. Browsers send it on every POST; ``null`` (sandboxed frames,
``file:`` pages, some redirects) and a missing Origin are refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus

from gateway.status.http import HttpError, Request

_REG_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def normalize_host(host: str) -> str:
    """A host name or IP literal (no port, no brackets) in canonical form; ValueError when it is neither."""
    text = host.strip().lower()
    try:
        address = ipaddress.ip_address(text.partition("%")[0])  # "fe80::1%eth0": the zone is per-host
    except ValueError:
        if len(text) > 253 or not _REG_NAME.fullmatch(text):
            raise ValueError(f"'{host}' is not a host name or IP address") from None
        return text.rstrip(".")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def split_authority(authority: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` → (canonical host, port or None). ValueError when malformed."""
    if authority.startswith("["):
        inside, bracket, rest = authority[1:].partition("]")
        if not bracket or not isinstance(ipaddress.ip_address(inside.partition("%")[0]), ipaddress.IPv6Address):
            raise ValueError(f"'{authority}': malformed IPv6 literal")
        host, port_text = inside, rest.removeprefix(":") if rest else None
        if rest and not rest.startswith(":"):
            raise ValueError(f"'{authority}': junk after the IPv6 literal")
    else:
        host, colon, port = authority.partition(":")
        port_text = port if colon else None
    if port_text is not None and (not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536):
        raise ValueError(f"'{authority}': bad port")
    return normalize_host(host), None if port_text is None else int(port_text)


class HostAllowList:
    """Which ``Host`` values this server answers; see the module docstring."""

    def __init__(self, configured: Iterable[str], bound: str) -> None:
        names = {normalize_host(name) for name in (*configured, *_LOOPBACK_NAMES)}
        hostname = socket.gethostname().lower()
        if _REG_NAME.fullmatch(hostname):
            names |= {hostname.rstrip("."), f"{hostname.rstrip('.')}.local"}
        if bound not in ("", "0.0.0.0", "::"):
            names.add(normalize_host(bound))
        self.names = frozenset(names)

    def check(self, request: Request) -> None:
        """Raise HttpError 400 for a malformed Host, 421 for one this box does not answer to."""
        try:
            host, _port = split_authority(request.header("host"))
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed Host header") from None
        if host in self.names or _is_loopback(host):
            return
        if request.local:
            try:
                if host == normalize_host(request.local):
                    return
            except ValueError:
                pass
        raise HttpError(HTTPStatus.MISDIRECTED_REQUEST, "this server does not answer to that host name; "
                        "add it to status.hosts")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_origin(request: Request) -> None:
    """Raise HttpError 403 unless ``Origin`` is exactly this page's scheme://host[:port]."""
    origin = request.header("origin")
    if not origin:
        raise HttpError(HTTPStatus.FORBIDDEN, "Origin header required: send the request from the status page")
    scheme = "https" if request.secure else "http"
    default_port = 443 if request.secure else 80
    try:
        host, port = split_authority(request.header("host"))
        origin_scheme, sep, authority = origin.partition("://")
        origin_host, origin_port = split_authority(authority) if sep else ("", None)
    except ValueError:
        raise HttpError(HTTPStatus.FORBIDDEN, "cross-origin request refused") from None
    if (origin_scheme, origin_host, origin_port or default_port) != (scheme, host, port or default_port):
        raise HttpError(HTTPStatus.FORBIDDEN, "cross-origin request refused")


class Slot(Enum):
    GENERAL = "general"  # any route, keep-alive
    HEALTHZ = "healthz"  # the reserve: one request, /healthz only


@dataclass
class ConnectionSlots:
    """Open connections, counted per client address, with a small reserve that only answers /healthz.

    One client holds at most ``per_client`` general connections; all clients together at most
    ``total``. When a client is refused a general slot, it may still take one of ``reserve``
    slots (one per client), so a health probe answers while the page is saturated.
    """

    total: int
    per_client: int
    reserve: int
    _general: dict[str, int] = field(default_factory=dict)
    _reserved: set[str] = field(default_factory=set)

    def take(self, client: str) -> Slot | None:
        held = self._general.get(client, 0)
        if held < self.per_client and sum(self._general.values()) < self.total:
            self._general[client] = held + 1
            return Slot.GENERAL
        if len(self._reserved) < self.reserve and client not in self._reserved:
            self._reserved.add(client)
            return Slot.HEALTHZ
        return None

    def give_back(self, client: str, slot: Slot) -> None:
        if slot is Slot.HEALTHZ:
            self._reserved.discard(client)
            return
        held = self._general.get(client, 0) - 1
        if held > 0:
            self._general[client] = held
        else:
            self._general.pop(client, None)

    @property
    def open(self) -> int:
        return sum(self._general.values()) + len(self._reserved)
