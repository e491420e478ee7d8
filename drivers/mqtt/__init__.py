"""MQTT 5 uplink driver (aiomqtt 2 on paho-mqtt 2).

``build_link`` is the factory gateway/registry.py names (aiomqtt loads only when a gateway starts a link).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.mqtt.config import MqttLinkConfig
    from gateway.contracts import LinkWiring, PrimaryLink


def build_link(config: MqttLinkConfig, wiring: LinkWiring) -> PrimaryLink:
    from drivers.mqtt.link import MqttLink

    return MqttLink(config, wiring.gateway_id, session=wiring.session, on_command=wiring.on_command,
                    screen=wiring.screen)
