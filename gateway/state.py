"""What the status view (gateway/view.py) and the command target (gateway/control.py) read of a running gateway.

They depend on this protocol, not on ``gateway.app.Gateway``, so the wiring imports them and they never
import the wiring (no app ↔ control ↔ view cycle). The link slots pair each link object with its config
section and, once the gateway runs, the runner that feeds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.config.site import SiteConfig
from gateway.contracts import (
    BusDriver,
    PrimaryLink,
    PrimaryLinkSettings,
    ReportLink,
    ReportLinkSettings,
    SatelliteLink,
    SatelliteLinkSettings,
)
from gateway.journal import AsyncJournal
from gateway.links import LinkRunner
from gateway.profiles import PayloadProfile
from gateway.rules import RuleEngine
from gateway.shared import Reading

if TYPE_CHECKING:  # the guard imports no vision library, but its name stays out of a camera-less start
    from gateway.satellite import SatelliteRunner  # likewise out of a start without a satellite link
    from gateway.vision.camerafault import CameraGuard


@dataclass(slots=True)
class PrimarySlot:
    link: PrimaryLink
    config: PrimaryLinkSettings
    profile: PayloadProfile
    runner: LinkRunner | None = None  # set when the gateway starts its links


@dataclass(slots=True)
class SatelliteSlot:
    link: SatelliteLink
    config: SatelliteLinkSettings
    runner: SatelliteRunner | None = None


class GatewayState(Protocol):
    @property
    def config(self) -> SiteConfig: ...

    @property
    def config_path(self) -> str | None: ...

    @property
    def started(self) -> float: ...

    @property
    def latest(self) -> Mapping[str, Reading]:
        """The newest reading of every point (one entry per point: bounded by the config)."""
        ...

    @property
    def latest_snapshot(self) -> dict[str, Any] | None: ...

    @property
    def buses(self) -> Sequence[BusDriver]: ...

    @property
    def primaries(self) -> Sequence[PrimarySlot]: ...

    @property
    def satellites(self) -> Sequence[SatelliteSlot]: ...

    @property
    def journal(self) -> AsyncJournal: ...

    @property
    def journal_stats(self) -> Mapping[str, Any]:
        """The journal's figures as last read by housekeeping (the view never queries the journal)."""
        ...

    @property
    def rules(self) -> RuleEngine: ...

    @property
    def broadcast(self) -> BroadcastSubsystem | None: ...

    @property
    def evidence(self) -> Sequence[dict[str, Any]]: ...

    @property
    def counters(self) -> Mapping[str, Any]: ...

    def loop_states(self) -> list[dict[str, Any]]: ...

    def degraded_status(self) -> list[dict[str, str]]:
        """Parts running on their temporary stand-ins (gateway/degraded.py): [{"fault", "reason"}], or []."""
        ...

    def snapshot(self) -> dict[str, Any]: ...

    def inventory(self) -> dict[str, Any]:
        """Software, config hash and label, hardware, modems, last roll-out (gateway/fleet/inventory.py)."""
        ...

    @property
    def report_links(self) -> Sequence[tuple[ReportLink, ReportLinkSettings]]:
        """Links that report to third parties (SL 651 centres), each with its config section."""
        ...

    @property
    def cameras(self) -> Sequence[CameraGuard]:
        """One guard per configured camera once the gateway runs (its health: running, failed, why)."""
        ...
