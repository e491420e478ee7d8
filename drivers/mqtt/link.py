"""MQTT 5 link: one connection, a reconnect loop that never gives up, QoS 1 with PUBACK.

aiomqtt 2 has no automatic reconnect; the documented pattern is the loop in
``run()``. ``send()`` returns only once the broker's PUBACK arrived with a success
code, which is what lets the journal delete a record. paho's own offline queue is kept
tiny: the journal is the queue, so nothing is hoarded in memory during an outage.

Session: Clean Start = 0 with a Session Expiry Interval, so the broker keeps our
command subscription and queues QoS 1 commands while we are away. Will with a Will
Delay Interval (short drops do not flap the retained status). Command replies carry a
Message Expiry Interval: a reply that could not be delivered in time dies at the broker.
The in-flight window is the smaller of ``max_inflight`` and the server's Receive Maximum.

Every failed attempt is explained in one log line (drivers/mqtt/tls.py); the same cause
is repeated at ERROR only every ``REPEAT_AFTER`` seconds so a week-long outage does not
flood the journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.mqtt import credentials
from drivers.mqtt.client import FieldgateClient
from drivers.mqtt.config import MqttLinkConfig
from drivers.mqtt.credentials import TlsFiles
from drivers.mqtt.inbound import MAX_PACKET_BYTES, RECEIVE_MAXIMUM, InboundQueue
from drivers.mqtt.reconnect import ReconnectPacer
from drivers.mqtt.session import DefaultSession, MqttSession
from drivers.mqtt.tls import Failure, build_context, explain
from gateway.credentials import CredentialError
from gateway.shared import OutboundMessage, Progress

log = logging.getLogger("fieldgate.mqtt")

CommandHandler = Callable[[str, bytes], Awaitable[None]]

# Same failure cause: logged at ERROR/WARNING again only after this long (DEBUG in between).
REPEAT_AFTER = 600.0
# Dropped command-topic messages (flood, oversize) are logged at WARNING at most this often, with counts.
DROP_REPORT_EVERY = 60.0
# Seconds to wait for CONNACK, SUBACK, PUBACK before the attempt counts as failed.
PROTOCOL_TIMEOUT = 10.0


class LinkDown(Exception):
    """The link is not connected; the message stays in the journal."""


def _plain_status(gateway_id: str) -> Callable[[str], bytes]:
    def status(state: str) -> bytes:
        return json.dumps({"v": 1, "gw": gateway_id, "state": state, "ts": round(time.time(), 3)}).encode()

    return status


class _Window:
    """At most ``limit`` QoS 1 messages awaiting PUBACK; the limit follows the server's Receive Maximum."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


class MqttLink:
    def __init__(
        self,
        config: MqttLinkConfig,
        gateway_id: str,
        *,
        status_payload: Callable[[str], bytes] | None = None,
        on_command: CommandHandler | None = None,
        session: MqttSession | None = None,
        screen: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.gateway_id = gateway_id
        self.session: MqttSession = session or DefaultSession(
            config.topic_prefix, gateway_id, status_payload or _plain_status(gateway_id)
        )
        self._on_command = on_command
        # Says, as a message is read, whether it is a command signed by a configured issuer
        # (drivers/mqtt/inbound.py): those are never dropped; without it every message counts as one.
        self._screen = screen
        # False while the daemon restarts itself on a reload: the next gateway says "online" a moment later,
        # so the platform should not see the site flap offline.
        self.announce_offline_on_stop = True
        self._client: FieldgateClient | None = None
        self._connected = asyncio.Event()
        self._window = _Window(config.max_inflight)
        self.connects = 0
        self.last_failure: Failure | None = None
        # cause text -> when it was last logged. Several causes can alternate (a TLS 1.3 client-certificate
        # refusal shows up as the alert on one attempt and as a reset on the next): each is logged once per
        # REPEAT_AFTER, not once per alternation. Bounded: a handful of recent causes.
        self._logged: dict[str, float] = {}
        self._failed_attempts = 0
        # Command-topic messages dropped before handling, by reason (drivers/mqtt/inbound.py), and what was logged.
        self.commands_dropped: dict[str, int] = {}
        self._drops_logged: dict[str, int] = {}
        self._drops_logged_at = -DROP_REPORT_EVERY
        # A missing key or certificate is a configuration error: say so at start, once.
        for problem in credentials.problems(config):
            self._report(Failure("config", f"configuration error: {problem}"), None)

    # ---- public API used by the app, the link runner and the command plane -----------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def until_connected(self) -> None:
        """Returns once the session is up (the link runner starts sending then, not at its next poll)."""
        await self._connected.wait()

    @property
    def window(self) -> int:
        """The in-flight limit now in force (``max_inflight``, lowered to the server's Receive Maximum)."""
        return self._window.limit

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def send(self, message: OutboundMessage) -> None:
        """Publish with QoS 1; returns after a successful PUBACK, raises otherwise (the records stay pending)."""
        await self._publish(message.topic, message.payload)

    async def publish_reply(self, topic_suffix: str, payload: bytes, expiry_s: float | None = None) -> None:
        """A command reply, with a Message Expiry Interval so a late reply dies at the broker."""
        expiry = self.config.reply_expiry if expiry_s is None else expiry_s
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = max(1, min(int(expiry), 0xFFFFFFFF))
        await self._publish(self.session.reply_topic(topic_suffix), payload, properties=props)

    async def run(self, progress: Progress) -> None:
        # Quick probes for a while after a loss, then jittered back-off (drivers/mqtt/reconnect.py).
        pacer = ReconnectPacer(self.config.reconnect_min, self.config.reconnect_max, self.config.reconnect_fast_window)
        while True:
            progress.beat()
            try:
                files = credentials.tls_files(self.config)
                args = self._client_args(files)
            except CredentialError as exc:
                # Re-checked slowly: a fixed file or permission is picked up without a restart.
                self._report(Failure("config", f"configuration error: {exc}"), self.config.reconnect_max)
                await self._pause(self.config.reconnect_max, progress)
                continue
            try:
                client = FieldgateClient(**args)
                async with client:
                    self._client = client
                    await self._start_session(client)
                    pacer.connected()
                    try:
                        await self._serve(client, progress)
                    except asyncio.CancelledError:
                        if self.announce_offline_on_stop:
                            await self._say_offline(client)
                        raise
            except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
                was_up = self.connected
                failure = explain(exc, self.config.host, self.config.port, files,
                                  self.config.tls.min_version if self.config.tls else "1.2")
                if was_up:
                    failure = Failure("lost", f"connection lost: {failure.text}")
                wait = pacer.next_delay(failure.kind)
                self._report(failure, wait)
            else:
                wait = pacer.next_delay("other")
            finally:
                self._connected.clear()
                self._client = None
            await self._pause(wait, progress)

    # ---- connection ----------------------------------------------------------------------

    def _client_args(self, files: TlsFiles | None) -> dict[str, Any]:
        cfg = self.config
        username, password = credentials.login(cfg)
        tls_context = None
        if files is not None and cfg.tls is not None:
            tls_context = build_context(files, check_hostname=cfg.tls.check_hostname, min_version=cfg.tls.min_version)
        connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_props.SessionExpiryInterval = int(cfg.session_expiry)
        # Flow control of the command topics: the broker holds back what we have not acknowledged.
        connect_props.ReceiveMaximum = RECEIVE_MAXIMUM
        connect_props.MaximumPacketSize = MAX_PACKET_BYTES
        will = None
        status_topic = self.session.status_topic()
        if status_topic is not None:
            will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_props.WillDelayInterval = int(cfg.will_delay)
            will = aiomqtt.Will(status_topic, self.session.status("offline"), qos=1, retain=True,
                                properties=will_props)
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "identifier": cfg.client_id or f"fieldgate-{self.gateway_id}",
            "username": username,
            "password": password,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "will": will,
            # Never clean: the broker keeps the command subscription and queued commands (session expiry).
            "clean_start": False,
            "properties": connect_props,
            "keepalive": int(cfg.keepalive),
            "tls_context": tls_context,
            "max_inflight_messages": cfg.max_inflight,
            "max_queued_outgoing_messages": cfg.max_inflight,
            "timeout": PROTOCOL_TIMEOUT,
            # Per connection (paho's message ids mean nothing on the next one); the counts outlive it.
            "inbound": InboundQueue(dropped=self.commands_dropped),
            "screen": self._screen,
        }

    async def _start_session(self, client: FieldgateClient) -> None:
        """Birth, subscriptions and the profile's connect messages, then open the link to the runner."""
        await self._window.resize(max(1, min(self.config.max_inflight, client.receive_maximum)))
        status_topic = self.session.status_topic()
        if status_topic is not None:
            await client.publish_confirmed(status_topic, self.session.status("online"), retain=True)
        for topic in self.session.subscriptions():
            # No Local: a broker must not hand our own publishes back (the ThingsBoard RPC topic is
            # both request and reply topic; on a plain broker we would answer our own replies).
            codes = await client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
            refused = [c for c in codes if not isinstance(c, int) and c.is_failure]
            if refused:
                self._report(Failure("subscribe", f"broker refused the command subscription {topic}: {refused[0]}; "
                                     "commands will not arrive"), None)
        for message in self.session.on_connect():
            await client.publish_confirmed(message.topic, message.payload)
        self.connects += 1
        self._failed_attempts = 0
        self._logged.clear()
        self.last_failure = None
        self._connected.set()
        sock = client._client.socket()
        tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        log.info("mqtt %s: connected to %s:%d (%s, session %s, in-flight window %d of server's %d)",
                 self.name, self.config.host, self.config.port, tls_version or "no TLS",
                 "resumed" if client.session_present else "new", self._window.limit, client.receive_maximum,
                 extra={"link": self.name})

    async def _serve(self, client: FieldgateClient, progress: Progress) -> None:
        async def beat() -> None:
            while True:
                progress.beat()
                self._report_drops()
                await asyncio.sleep(1.0)

        beater = asyncio.create_task(beat())
        try:
            while True:
                message = await client.next_message()
                try:
                    if self._on_command is not None:
                        # Returns once the command is taken (verified and claimed, or refused); only then
                        # may the broker forget it. A cancel here (stop) leaves it unacknowledged: redelivered.
                        await self._on_command(message.topic, message.payload)
                except Exception:
                    log.exception("mqtt %s: command handler failed", self.name)
                client.handled(message)
        finally:
            beater.cancel()

    def _report_drops(self) -> None:
        """One WARNING per minute at most, with the counts, while command-topic messages are being dropped."""
        now = time.monotonic()
        if self.commands_dropped == self._drops_logged or now - self._drops_logged_at < DROP_REPORT_EVERY:
            return
        new = {reason: count - self._drops_logged.get(reason, 0) for reason, count in self.commands_dropped.items()
               if count != self._drops_logged.get(reason, 0)}
        self._drops_logged, self._drops_logged_at = dict(self.commands_dropped), now
        log.warning("mqtt %s: dropped %d message(s) on the command topics before handling (%s); a flood or "
                    "oversized messages: a signed command sent with QoS 1 is never dropped", self.name,
                    sum(new.values()), ", ".join(f"{reason} {count}" for reason, count in sorted(new.items())),
                    extra={"link": self.name})

    async def _say_offline(self, client: FieldgateClient) -> None:
        # A clean disconnect does not fire the will, so say "offline" ourselves.
        status_topic = self.session.status_topic()
        if status_topic is None:
            return
        try:
            await asyncio.wait_for(
                client.publish_confirmed(status_topic, self.session.status("offline"), retain=True), 3.0
            )
        except Exception as exc:
            log.info("mqtt %s: could not publish offline status: %s", self.name, exc)

    async def _publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> None:
        client = self._client
        if client is None or not self.connected:
            raise LinkDown(f"{self.name} is not connected")
        await self._window.acquire()
        try:
            await client.publish_confirmed(topic, payload, properties=properties)
        finally:
            await self._window.release()

    async def _pause(self, seconds: float, progress: Progress) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            progress.beat()
            await asyncio.sleep(min(left, 5.0))

    def _report(self, failure: Failure, retry_in: float | None) -> None:
        """One line per cause; the same cause again only every REPEAT_AFTER seconds."""
        self.last_failure = failure
        self._failed_attempts += 1
        now = time.monotonic()
        retry = f"; retrying in {retry_in:.1f}s" if retry_in is not None else ""
        last = self._logged.get(failure.cause)
        repeated = last is not None
        if last is not None and now - last < REPEAT_AFTER:
            log.debug("mqtt %s: %s%s", self.name, failure.text, retry, extra={"link": self.name})
            return
        self._logged[failure.cause] = now
        while len(self._logged) > 8:
            del self._logged[next(iter(self._logged))]
        level = logging.WARNING if failure.kind in {"lost", "refused", "timeout", "dns", "unreachable"} \
            else logging.ERROR
        attempts = f" (still failing after {self._failed_attempts} attempts)" if repeated else ""
        log.log(level, "mqtt %s: %s%s%s", self.name, failure.text, attempts, retry,
                extra={"link": self.name, "cause": failure.kind})
