"""aiomqtt 2 client with the three things fieldgate needs and aiomqtt does not expose.

1. CONNACK properties: the server's Receive Maximum (our in-flight window must not
   exceed it) and the Session Present flag (did our command subscription survive?).
2. PUBACK reason codes: an MQTT 5 broker may answer PUBACK with a failure code (0x87
   not authorized, 0x97 quota exceeded, ...). aiomqtt treats every PUBACK as success;
   the journal must not delete a record the broker refused.
3. A connection dropped before CONNACK (the broker refusing our client certificate
   sends a TLS alert after the handshake) fails the attempt at once with paho's socket
   error, instead of waiting for aiomqtt's timeout with "Operation timed out".

These hooks use aiomqtt 2.x internals (``_client``, ``_connected``, ``_pending_publishes``,
``_pending_call``, ``_wait_for``); pyproject pins aiomqtt < 3 and tests/unit/test_mqtt_link.py
exercises each of them against a real mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiomqtt
from paho.mqtt import client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# paho's own log: its socket errors are explained by drivers/mqtt/tls.py in one line, so
# they are kept at DEBUG here instead of repeating at ERROR on every retry.
PAHO_LOG = logging.getLogger("fieldgate.mqtt.paho")


class _DemoteToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return PAHO_LOG.isEnabledFor(logging.DEBUG)


PAHO_LOG.addFilter(_DemoteToDebug())

# MQTT 5 default when the server does not send Receive Maximum.
DEFAULT_RECEIVE_MAXIMUM = 65535


class PublishRefused(aiomqtt.MqttError):
    """The broker acknowledged a PUBLISH with a failure reason code: the message was not accepted."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        super().__init__(f"broker refused the message on {topic}: {reason} (reason code {reason.value:#04x})")
        self.reason = reason


class FieldgateClient(aiomqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("logger", PAHO_LOG)
        super().__init__(*args, **kwargs)
        self.receive_maximum = DEFAULT_RECEIVE_MAXIMUM
        self.session_present = False
        self.last_socket_error = ""
        self._puback: dict[int, ReasonCode | None] = {}
        self._client.on_log = self._on_paho_log

    def _on_paho_log(self, _client: paho.Client, _userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            self.last_socket_error = text[:300]

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if not self._connected.done() and not reason_code.is_failure:
            self.session_present = bool(flags.session_present)
            receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
            if isinstance(receive_max, int) and receive_max > 0:
                self.receive_maximum = receive_max
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if not self._connected.done():
            detail = self.last_socket_error or str(reason_code)
            self._connected.set_exception(aiomqtt.MqttError(f"connection closed before CONNACK: {detail}"))
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        if mid in self._puback:
            self._puback[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: Properties | None = None
    ) -> None:
        """QoS 1 publish that returns on a successful PUBACK and raises PublishRefused on a failure code."""
        info = self._client.publish(topic, payload, 1, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        # Registered before the first await: the PUBACK is read on this loop, so it cannot come earlier.
        self._puback[info.mid] = None
        try:
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                if info.is_published():
                    return
                await self._wait_for(confirmation.wait(), timeout=None)  # aiomqtt's client timeout
            reason = self._puback.get(info.mid)
        finally:
            self._puback.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            raise PublishRefused(topic, reason)
