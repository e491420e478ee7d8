"""The MQTT link in-process: what it logs about its connection failures (the link against a real
mosquitto is tested in tests/hil/test_mqtt_link.py)."""

from __future__ import annotations

import logging

import pytest

from drivers.mqtt.config import MqttLinkConfig
from drivers.mqtt.link import MqttLink


def test_alternating_causes_are_each_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    # A TLS 1.3 client-certificate refusal can show as the alert on one attempt and a reset on the next;
    # the operator must see each cause once, not a line per attempt.
    from drivers.mqtt.tls import Failure

    link = MqttLink(MqttLinkConfig(type="mqtt", host="127.0.0.1", port=1), "gw")
    alert = Failure("tls", "TLS: broker does not trust our client certificate")
    reset = Failure("lost", "connection lost: reset by peer")
    with caplog.at_level(logging.INFO, logger="fieldgate.mqtt"):
        for _ in range(5):
            link._report(alert, 1.0)
            link._report(reset, 1.0)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
