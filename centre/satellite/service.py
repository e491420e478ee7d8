"""The bridge running: the command receiver (drivers/beidou), the broker (MQTT 5, QoS 1), the send slots.

Three tasks around one :class:`Bridge`: the receiver link reads every card's message into it; the
publisher hands what it decoded to the broker in order and, on each PUBACK, lets the bridge owe
the card its ACK; the sender gives the receiver one message per service interval (the link waits
the interval and honours "frequency not reached" itself). A broker that is down holds publication
(bounded) and so the ACKs: the gateways keep their records until the platform really has them.
Platform commands for a gateway arrive on ``<prefix>/<gw>/satcmd`` (the compact COMMAND's raw bytes)
and leave in that card's next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

import aiomqtt
from paho.mqtt import client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from centre.satellite.bridge import LOG_EVERY_S, Bridge
from centre.satellite.config import Centre
from centre.satellite.records import Publication
from drivers.beidou.link import BeidouLink
from drivers.beidou.sentences import Incoming
from drivers.mqtt.client import FieldgateClient
from drivers.mqtt.credentials import TlsFiles, tls_files_of
from drivers.mqtt.tls import build_context, explain
from drivers.satlink import SatLinkError
from gateway.credentials import CredentialError
from gateway.shared import NullProgress, OutboundMessage

log = logging.getLogger("fieldgate.satcentre")

SEND_RETRY_S = 5.0  # after the receiver failed a send
COMMAND_TOPIC = "satcmd"


class CentreService:
    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.bridge = Bridge(centre)
        self.link = BeidouLink(centre.config.receiver.link_config(), lambda _payload: None,
                               on_incoming=self._incoming)
        self._to_publish = asyncio.Event()  # a card's message was decoded
        self._to_send = asyncio.Event()  # an ACK or a command is owed to a card
        self._by_base = {gw.base: gw.gateway_id for gw in centre.gateways.values()}
        self._broker_failure = ("", 0.0)  # the last broker failure logged, and when

    def _incoming(self, item: Incoming) -> None:
        self.bridge.on_incoming(item.sender, item.payload)
        self._to_publish.set()
        self._to_send.set()  # a copy already published is owed its ACK again at once

    async def run(self) -> None:
        config = self.centre.config
        log.info("%s: %d gateway cards on receiver %s; broker %s:%d", config.name, len(self.centre.gateways),
                 config.receiver.port, config.broker.host, config.broker.port)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.link.run(NullProgress()), name="receiver")
                tasks.create_task(self._broker_loop(), name="broker")
                tasks.create_task(self._send_loop(), name="sender")
        finally:
            self.bridge.store.close()  # what is queued for the state file is written before the process ends

    # ---- broker ---------------------------------------------------------------------------------

    async def _broker_loop(self) -> None:
        broker = self.centre.config.broker
        while True:
            files: TlsFiles | None = None
            try:
                files = tls_files_of(broker.tls)  # read at each connect: a renewed certificate needs no restart
                context = None if files is None or broker.tls is None else \
                    build_context(files, check_hostname=broker.tls.check_hostname, min_version=broker.tls.min_version)
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 3600  # commands queued for the bridge survive a short restart
                async with FieldgateClient(hostname=broker.host, port=broker.port, identifier=broker.client_id,
                                           protocol=paho.MQTTv5, keepalive=int(broker.keepalive), clean_start=False,
                                           properties=props, tls_context=context) as client:
                    log.info("%s: broker connected", self.centre.config.name)
                    for base in self._by_base:
                        await client.subscribe(f"{base}/{COMMAND_TOPIC}", qos=1)
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._publish_loop(client))
                        tasks.create_task(self._command_loop(client))
            except* (aiomqtt.MqttError, OSError, ssl.SSLError, CredentialError) as group:
                failure = explain(group.exceptions[0], broker.host, broker.port, files,
                                  broker.tls.min_version if broker.tls else "1.2")
                now = time.monotonic()
                repeated = failure.text == self._broker_failure[0] and now - self._broker_failure[1] < LOG_EVERY_S
                if not repeated:
                    self._broker_failure = (failure.text, now)
                log.log(logging.DEBUG if repeated else logging.WARNING,
                        "%s: broker: %s; %d messages wait; retrying every %.1f s (the same cause logged again in "
                        "%.0f s at most)", self.centre.config.name, failure.text, self.bridge.unpublished,
                        broker.reconnect, LOG_EVERY_S)
            await asyncio.sleep(broker.reconnect)

    async def _publish_loop(self, client: FieldgateClient) -> None:
        while True:
            self._to_publish.clear()  # before looking: a message decoded meanwhile sets it again
            publication = self.bridge.next_publication()
            if publication is None:
                await self._to_publish.wait()
                continue
            # On disk before the broker has it: after a crash the same bytes go out, not a new decoding.
            await self.bridge.store.saved()
            if self.bridge.next_publication() is not publication:
                continue  # dropped meanwhile (the queue was full)
            await client.publish_confirmed(publication.topic, publication.payload,
                                           properties=_expiry(publication))
            self.bridge.published(publication)
            self._to_send.set()  # an ACK is owed now

    async def _command_loop(self, client: FieldgateClient) -> None:
        while True:
            message = await client.next_message()
            base, _, _ = message.topic.rpartition("/")
            gateway_id = self._by_base.get(base, "")
            why = self.bridge.queue_command(gateway_id, message.payload, self.link.max_bytes)
            if why:
                log.warning("%s: command on %s not sent: %s", self.centre.config.name, message.topic, why)
            else:
                log.info("%s: command for %s queued (%d bytes)", self.centre.config.name, gateway_id,
                         len(message.payload))
                self._to_send.set()
            await self.bridge.store.saved()  # the broker forgets the command once told: only the file has it then
            client.handled(message)

    # ---- receiver -------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            self._to_send.clear()
            send = self.bridge.next_send(self.link.max_bytes) if self.link.connected else None
            if send is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # the receiver may come up without an event
                        await self._to_send.wait()
                continue
            await self.bridge.store.saved()  # what the ACK or command stands for is on disk before the card hears it
            try:
                await self.link.send(OutboundMessage("", send.payload, ()), dest=send.card)
            except SatLinkError as exc:
                log.warning("%s: receiver did not send to card %d (%s); retrying", self.centre.config.name,
                            send.card, exc)
                await asyncio.sleep(SEND_RETRY_S)
                continue
            self.bridge.sent(send)
            what = "command" if send.command else f"ACK of {len(send.acked)} seqs"
            log.info("%s: %s sent to card %d (%d bytes)", self.centre.config.name, what, send.card, len(send.payload))


def _expiry(publication: Publication) -> Any:
    if publication.expiry_s is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = publication.expiry_s
    return props
