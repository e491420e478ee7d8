"""The technician's view of the box: status page, /api/status, /metrics, /healthz, `fieldgate status`.

The daemon starts ``StatusServer(config.status, gateway).run()``; see docs/status.md.
"""

from gateway.status.config import StatusConfig
from gateway.status.server import StatusServer
from gateway.status.view import StatusView

__all__ = ["StatusConfig", "StatusServer", "StatusView"]
