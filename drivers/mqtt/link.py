"""MQTT 5 link: one connection, a reconnect loop that never gives up, QoS 1 with PUBACK.

aiomqtt 2 has no automatic reconnect; the documented pattern is the loop in
``run()``. ``send()`` returns only once the broker's PUBACK arrived, which is what
lets the journal delete a record. paho's own offline queue is kept tiny: the journal
is the queue, so nothing is hoarded in memory during an outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.mqtt.config import MqttLinkConfig
from gateway.shared import OutboundMessage, Progress

log = logging.getLogger("fieldgate.mqtt")

CommandHandler = Callable[[str, bytes], Awaitable[None]]


class LinkDown(Exception):
    """The link is not connected; the message stays in the journal."""


class MqttLink:
    def __init__(
        self,
        config: MqttLinkConfig,
        gateway_id: str,
        *,
        status_payload: Callable[[str], bytes],
        on_command: CommandHandler | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.gateway_id = gateway_id
        self.base = f"{config.topic_prefix.rstrip('/')}/{gateway_id}"
        self.status_topic = f"{self.base}/status"
        self.command_topic = f"{self.base}/cmd/#"
        self._status_payload = status_payload
        self._on_command = on_command
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def _client_args(self) -> dict[str, object]:
        cfg = self.config
        will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_props.WillDelayInterval = int(cfg.will_delay)
        connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_props.SessionExpiryInterval = int(cfg.session_expiry)
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "identifier": cfg.client_id or f"fieldgate-{self.gateway_id}",
            "username": cfg.username,
            "password": password,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "will": aiomqtt.Will(self.status_topic, self._status_payload("offline"), qos=1, retain=True,
                                 properties=will_props),
            "clean_start": False,
            "properties": connect_props,
            "keepalive": int(cfg.keepalive),
            "tls_context": self._tls_context(),
            "max_inflight_messages": cfg.max_inflight,
            "max_queued_outgoing_messages": cfg.max_inflight,
            "timeout": 10.0,
        }

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = tls.check_hostname
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        return context

    async def run(self, progress: Progress) -> None:
        delay = self.config.reconnect_min
        while True:
            progress.beat()
            try:
                client = aiomqtt.Client(**self._client_args())  # type: ignore[arg-type]
                async with client:
                    self._client = client
                    self.connects += 1
                    await client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
                    await client.subscribe(self.command_topic, qos=1)
                    self._connected.set()
                    log.info("mqtt %s: connected to %s:%d", self.name, self.config.host, self.config.port,
                             extra={"link": self.name})
                    delay = self.config.reconnect_min
                    try:
                        await self._serve(client, progress)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except aiomqtt.MqttError as exc:
                log.warning("mqtt %s: %s; reconnecting in %.1fs", self.name, exc, delay, extra={"link": self.name})
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.error("mqtt %s: cannot connect: %s; retrying in %.1fs", self.name, exc, delay,
                          extra={"link": self.name})
            finally:
                self._connected.clear()
                self._client = None
            # Full jitter: many gateways losing the same broker must not come back in lockstep.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.config.reconnect_max)

    async def _serve(self, client: aiomqtt.Client, progress: Progress) -> None:
        async def beat() -> None:
            while True:
                progress.beat()
                await asyncio.sleep(1.0)

        beater = asyncio.create_task(beat())
        try:
            async for message in client.messages:
                if self._on_command is not None:
                    try:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        await self._on_command(str(message.topic), data)
                    except Exception:
                        log.exception("mqtt %s: command handler failed", self.name)
        finally:
            beater.cancel()

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        # A clean disconnect does not fire the will, so say "offline" ourselves.
        try:
            await asyncio.wait_for(
                client.publish(self.status_topic, self._status_payload("offline"), qos=1, retain=True), 3.0
            )
        except Exception as exc:
            log.info("mqtt %s: could not publish offline status: %s", self.name, exc)

    async def send(self, message: OutboundMessage) -> None:
        client = self._client
        if client is None or not self.connected:
            raise LinkDown(f"{self.name} is not connected")
        await client.publish(message.topic, message.payload, qos=1)
