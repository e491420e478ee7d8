"""The technician's view of the box: status page, /api/status, /metrics, /healthz, `fieldgate status`.

The daemon starts ``StatusServer(config.status, gateway).run()``; see docs/status.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.status.config import StatusConfig

if TYPE_CHECKING:
    from gateway.status.server import StatusServer
    from gateway.status.view import StatusView

__all__ = ["StatusConfig", "StatusServer", "StatusView"]


def __getattr__(name: str) -> Any:
    """The server and its view on first use: a site config names StatusConfig, a site without a status page
    never needs the rest (HTML, the page's texts, the camera and trend views; issue 18, memory)."""
    if name == "StatusServer":
        from gateway.status.server import StatusServer

        return StatusServer
    if name == "StatusView":
        from gateway.status.view import StatusView

        return StatusView
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
