"""On-box trend history for the status page's charts (docs/status.md, "Trends"). Not the journal."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from gateway.history.config import HistoryConfig
from gateway.history.service import HistoryService, Period, Threshold

if TYPE_CHECKING:
    from gateway.config.site import SiteConfig
    from gateway.datapath import DataPath

log = logging.getLogger("fieldgate.history")

__all__ = ["HistoryConfig", "HistoryService", "Period", "Threshold", "attach_history"]


def attach_history(site: SiteConfig, datapath: DataPath) -> HistoryService | None:
    """The site's trend store, fed with every reading the report filter admits; None when switched off."""
    config = site.history
    if not config.enabled:
        return None
    path = config.path or site.gateway.state_dir / "history.sqlite"
    try:
        service = HistoryService(config, path, site.rules)
    except (OSError, sqlite3.Error) as exc:  # charts are a convenience: the gateway runs without them
        log.error("trend history off: %s cannot be opened (%s)", path, exc)
        return None
    datapath.observers.append(service.observe)
    datapath.transition_observers.append(service.on_transition)
    return service
