"""BeiDou RDSS short-message satellite link (BDS-2 4.0 / BDS-3 2.1 modems).

``build_link`` is the factory gateway/registry.py names (the modem port opens only when a gateway starts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.beidou.config import BeidouConfig
    from gateway.contracts import SatelliteLink


def build_link(config: BeidouConfig, on_message: Callable[[bytes], None]) -> SatelliteLink:
    from drivers.beidou.link import BeidouLink

    return BeidouLink(config, on_message)
