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


def test_a_cause_quoting_the_clock_is_the_same_cause_a_minute_later(caplog: pytest.LogCaptureFixture) -> None:
    # An expired broker certificate quotes this box's clock to the minute; the retry after the minute turned
    # logged the cause again (tests/hil/test_mqtt_tls.py failed at a minute boundary).
    from drivers.mqtt.tls import Failure

    link = MqttLink(MqttLinkConfig(type="mqtt", host="127.0.0.1", port=1), "gw")
    with caplog.at_level(logging.INFO, logger="fieldgate.mqtt"):
        for minute in ("20:15", "20:16", "20:17"):
            link._report(Failure("broker_expired", "TLS: broker certificate has expired "
                                                   f"(this box's clock says 2026-12-04 {minute} UTC)"), 1.0)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
