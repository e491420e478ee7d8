"""aiomqtt 2 client with the three things fieldgate needs and aiomqtt does not expose.

1. CONNACK properties: the server's Receive Maximum (our in-flight window must not
   exceed it) and the Session Present flag (did our command subscription survive?).
2. PUBACK reason codes: an MQTT 5 broker may answer PUBACK with a failure code (0x87
   not authorized, 0x97 quota exceeded, ...). aiomqtt treats every PUBACK as success;
   the journal must not delete a record the broker refused.
3. A connection dropped before CONNACK (the broker refusing our client certificate
   sends a TLS alert after the handshake) fails the attempt at once with paho's socket
   error, instead of waiting for aiomqtt's timeout with "Operation timed out".
4. Incoming messages sorted as they are read and acknowledged only once handled (paho's manual ack,
   drivers/mqtt/inbound.py), with the socket no longer read while enough signed commands wait.

These hooks use aiomqtt 2.x internals (``_client``, ``_connected``, ``_disconnected``,
``_pending_publishes``, ``_pending_call``, ``_wait_for``, ``_misc_loop``, ``_on_socket_open``); pyproject
pins aiomqtt < 3 and tests/unit/test_mqtt_link.py exercises each of them against a real mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt import client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.inbound import InboundMessage, InboundQueue

# paho's own log: its socket errors are explained by drivers/mqtt/tls.py in one line, so
# they are kept at DEBUG here instead of repeating at ERROR on every retry.
PAHO_LOG = logging.getLogger("fieldgate.mqtt.paho")


class _DemoteToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return PAHO_LOG.isEnabledFor(logging.DEBUG)


PAHO_LOG.addFilter(_DemoteToDebug())

# Packets read per wake-up of the socket reader at most.
READ_BURST = 64

# MQTT 5 default when the server does not send Receive Maximum.
DEFAULT_RECEIVE_MAXIMUM = 65535


class PublishRefused(aiomqtt.MqttError):
    """The broker acknowledged a PUBLISH with a failure reason code: the message was not accepted."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        super().__init__(f"broker refused the message on {topic}: {reason} (reason code {reason.value:#04x})")
        self.reason = reason


class FieldgateClient(aiomqtt.Client):
    def __init__(self, *args: Any, inbound: InboundQueue | None = None,
                 screen: Callable[[str, bytes], bool] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("logger", PAHO_LOG)
        super().__init__(*args, **kwargs)
        self.receive_maximum = DEFAULT_RECEIVE_MAXIMUM
        self.session_present = False
        self.last_socket_error = ""
        self._puback: dict[int, ReasonCode | None] = {}
        self._client.on_log = self._on_paho_log
        # 4. Incoming messages: sorted by ``screen`` as read, acknowledged by us once handled.
        self.inbound = inbound if inbound is not None else InboundQueue()
        self._screen = screen
        self._client.manual_ack_set(True)
        self._reader: tuple[int, Callable[[], None]] | None = None
        self._paused = False

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        topic, payload = str(message.topic), bytes(message.payload)
        screened = len(payload) <= self.inbound.max_bytes and (self._screen is None or self._screen(topic, payload))
        inbound = InboundMessage(topic, payload, int(message.qos), int(message.mid), screened)
        self.inbound.offer(inbound)
        if not screened:
            self.ack(inbound)  # no signed command: nothing for the broker to keep (junk is dropped or refused)
        if self.inbound.full:
            self._pause_reading()

    async def next_message(self) -> InboundMessage:
        """The next message to handle (signed commands first); raises MqttError when the connection drops."""
        waiter = self._loop.create_task(self.inbound.get())
        try:
            done, _ = await asyncio.wait((waiter, self._disconnected), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        if waiter in done:
            if self._paused and self.inbound.drained:
                self._resume_reading()
            return waiter.result()
        waiter.cancel()
        raise aiomqtt.MqttError("disconnected while waiting for a command") from self._disconnected.exception()

    def ack(self, message: InboundMessage) -> None:
        """PUBACK a QoS 1 message now: the broker forgets it."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def handled(self, message: InboundMessage) -> None:
        """The handler has taken ``message``: a signed command's PUBACK goes out now.

        Unscreened messages were acknowledged as they were read, so acknowledgements can leave out
        of arrival order (MQTT 5 §4.6 asks for arrival order; brokers match them by packet id, as
        mosquitto does in tests/adversarial/test_command_plane_to_outputs.py)."""
        if message.screened:
            self.ack(message)

    # ---- back-pressure: aiomqtt's socket reader, kept so that it can be paused ----

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # aiomqtt's own _on_socket_open, but with the reader callback kept (paho calls this from
        # the executor thread that runs connect(), so loop work is scheduled thread-safely).
        def read() -> None:
            try:
                # Several packets per wake-up while they are there (a flood is read as fast as the
                # interpreter allows), never more than READ_BURST so the loop stays responsive.
                for _ in range(READ_BURST):
                    if client.loop_read() != paho.MQTT_ERR_SUCCESS or self._paused:
                        break
                    pending = getattr(client._sock, "pending", None)  # SSL sockets buffer decoded bytes
                    if pending is not None and pending() > 0:
                        continue
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def start_misc() -> None:
            self._misc_task = self._loop.create_task(self._misc_loop())

        self._reader = (sock.fileno(), read)
        self._paused = False
        self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), read)
        self._loop.call_soon_threadsafe(start_misc)

    def _pause_reading(self) -> None:
        if self._reader is not None and not self._paused:
            self._paused = True
            self._loop.remove_reader(self._reader[0])

    def _resume_reading(self) -> None:
        if self._reader is not None and self._paused:
            self._paused = False
            fd, read = self._reader
            self._loop.add_reader(fd, read)
            self._loop.call_soon(read)  # what arrived (or was decoded by SSL) while paused

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
