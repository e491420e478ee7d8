"""Iridium SBD satellite link (9602/9603 modems, AT commands).

``build_link`` is the factory gateway/registry.py names (the modem port opens only when a gateway starts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.iridium.config import IridiumConfig
    from gateway.contracts import SatelliteLink


def build_link(config: IridiumConfig, on_message: Callable[[bytes], None]) -> SatelliteLink:
    from drivers.iridium.link import IridiumLink

    return IridiumLink(config, on_message)
