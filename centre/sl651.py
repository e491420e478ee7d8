"""``fieldgate sl651-centre``: an SL 651 centre-side receiver that lands stations on MQTT.

One asyncio TCP server accepts stations (existing RTUs and fieldgate boxes). Per connection a length-field
splitter (frame.FrameReader) cuts frames; each data report is decoded, its observations published to the
broker in the ``fieldgate`` envelope (QoS 1, docs/sl651.md), and only after the broker's PUBACK is the
station sent its confirmation (EOT, or ESC to keep it online). A frame that fails its checks gets no answer
(6.3.1.2 b: the station resends) and one log line; a missing M3 packet gets a NAK naming it.

State it can lose and nothing else: the de-duplication memory (station, function, serial, first
observation time) is bounded and in memory; after a restart a re-sent report is published again with the
same record ``seq`` (a content key), which the platform de-duplicates as it does for gateways. The broker
is the hand-off, so several receivers can run behind one address (docs/sl651.md §Scaling).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sys
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import aiomqtt
from paho.mqtt import client as paho
from pydantic import Field

from drivers.mqtt.client import FieldgateClient
from drivers.sl651.body import DATA_REPORTS
from drivers.sl651.errors import Sl651Error
from drivers.sl651.frame import EOT, ESC, NAK, Direction, Frame, FrameReader, Reassembler
from drivers.sl651.message import Message, Observation, confirmation, decode_message, observations
from gateway.shared import Name, Seconds, StrictModel, TopicPrefix

log = logging.getLogger("fieldgate.sl651.centre")

READ_CHUNK = 4096
STATION_HEX = r"^[0-9A-Fa-f]{10}$"


class CentreConfig(StrictModel):
    """``fieldgate sl651-centre --config FILE``: every key optional; flags override the file."""

    listen: str = Field(default="0.0.0.0:5005", description="host:port stations connect to")
    broker: str = Field(default="127.0.0.1:1883", description="MQTT broker host:port")
    client_id: Name | None = Field(default=None, description="MQTT client id (default sl651-centre-<port>)")
    topic_prefix: TopicPrefix = "fieldgate/v1"
    gateway_prefix: Name = Field(default="sl651-", description="gw of a station = this + its 10-hex address")
    centre_address: int | None = Field(default=None, ge=1, le=255, description="only frames for this centre")
    stations: list[str] | None = Field(default=None, description="accept only these addresses (hex)")
    points: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="station address → {element code → point name}; default the code (Z, PJ…)")
    utc_offset_hours: float = Field(default=8.0, ge=-14, le=14, description="station clocks (Beijing time)")
    confirm: Literal["EOT", "ESC"] = Field(default="EOT", description="ESC asks the station to stay online")
    dedup_entries: int = Field(default=200_000, ge=0, le=10_000_000)
    publish_timeout: Seconds = Field(default=10.0, gt=0, description="no PUBACK by then: no confirmation")
    idle_timeout: Seconds = Field(default=1200.0, gt=0, description="close a connection silent this long")
    max_connections: int = Field(default=10_000, ge=1)
    max_inflight: int = Field(default=200, ge=1, le=65535, description="QoS 1 publishes awaiting PUBACK (paho: 20)")


def split_address(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or text, int(port)) if port.isdigit() else (text, default_port)


def record_seq(gw: str, code: str, observed: datetime | None, step: int | None, serial: int) -> int:
    """A content key for the envelope's ``seq``: the same observation re-sent (after a lost confirmation or a
    receiver restart) gets the same number, so the platform de-duplicates it by (gw, seq). 48 bits, ≥ 1."""
    key = f"{gw}|{code}|{observed.isoformat() if observed else serial}|{step}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=6).digest(), "big") or 1


def envelope(config: CentreConfig, obs: list[Observation]) -> tuple[str, bytes]:
    """The fieldgate envelope of one report's observations, on ``<prefix>/<gw>/telemetry``."""
    first = obs[0]
    gw = config.gateway_prefix + first.station
    names = config.points.get(first.station, {}) or config.points.get(first.station.lower(), {})
    zone = timezone(timedelta(hours=config.utc_offset_hours))
    records = []
    for o in obs:
        when = (o.observed or o.sent).replace(tzinfo=zone).timestamp()
        record: dict[str, Any] = {
            "seq": record_seq(gw, o.code, o.observed, o.step, o.serial), "point": names.get(o.code, o.code),
            "value": float(o.value) if isinstance(o.value, Decimal) else o.value, "unit": o.unit,
            "q": "good" if o.value is not None else "comm_fail", "ts": round(when, 3),
        }
        attrs: dict[str, Any] = {"sl651": {"fn": f"{o.function:02X}", "serial": o.serial}}
        if o.station_class is not None:
            attrs["sl651"]["class"] = chr(o.station_class) if 0x20 < o.station_class < 0x7F else o.station_class
        if o.step is not None:
            attrs["sl651"]["step"] = o.step
        if o.value is None:
            attrs["detail"] = "the station sent no value (all F)"
        record["attrs"] = attrs
        records.append(record)
    topic = f"{config.topic_prefix.rstrip('/')}/{gw}/telemetry"
    return topic, json.dumps({"v": 1, "gw": gw, "records": records}, separators=(",", ":")).encode()


class Dedup:
    """Reports already published, by (station, function, serial, first observation or send time); bounded LRU."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, int, int, datetime], None] = OrderedDict()

    @staticmethod
    def key(message: Message) -> tuple[str, int, int, datetime]:
        assert message.body is not None
        first = next((e.value for e in message.body.elements if isinstance(e.value, datetime)), message.body.sent)
        assert isinstance(first, datetime)
        return message.frame.station_hex(), message.frame.function, message.body.serial, first

    def seen(self, message: Message) -> bool:
        key = self.key(message)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def add(self, message: Message) -> None:
        if self.size:
            self._seen[self.key(message)] = None
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)


class Publisher:
    """One MQTT 5 connection, reconnected forever; ``publish`` returns after a successful PUBACK or raises."""

    def __init__(self, config: CentreConfig) -> None:
        self.config = config
        self.host, self.port = split_address(config.broker, 1883)
        listen_port = split_address(config.listen, 5005)[1]
        self.client_id = config.client_id or f"sl651-centre-{listen_port}"
        self._client: FieldgateClient | None = None
        self._up = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                client = FieldgateClient(hostname=self.host, port=self.port, identifier=self.client_id,
                                         protocol=paho.MQTTv5, keepalive=30, max_queued_outgoing_messages=1000,
                                         max_inflight_messages=self.config.max_inflight)
                async with client:
                    self._client = client
                    self._up.set()
                    log.info("sl651-centre: connected to the broker %s:%d", self.host, self.port)
                    delay = 0.5
                    while True:
                        await client.next_message()  # nothing subscribed: returns only by raising on a drop
            except (aiomqtt.MqttError, OSError) as exc:
                if self._up.is_set():
                    log.warning("sl651-centre: broker connection lost (%s); reports are not confirmed meanwhile", exc)
                else:
                    log.debug("sl651-centre: broker %s:%d: %s", self.host, self.port, exc)
            finally:
                self._up.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def publish(self, topic: str, payload: bytes) -> None:
        async with asyncio.timeout(self.config.publish_timeout):
            await self._up.wait()
            client = self._client
            if client is None:
                raise ConnectionError("broker not connected")
            await client.publish_confirmed(topic, payload)


class Centre:
    def __init__(self, config: CentreConfig, publisher: Publisher) -> None:
        self.config = config
        self.publisher = publisher
        self.dedup = Dedup(config.dedup_entries)
        self.allowed = {s.upper() for s in config.stations} if config.stations is not None else None
        self.end = ESC if config.confirm == "ESC" else EOT
        self.zone = timezone(timedelta(hours=config.utc_offset_hours))
        self.connections = 0
        self.counts: dict[str, int] = {"frames": 0, "published": 0, "duplicates": 0, "rejected": 0,
                                       "unconfirmed": 0, "keepalives": 0}
        self.server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> asyncio.Server:
        host, port = split_address(self.config.listen, 5005)
        self.server = await asyncio.start_server(self._connection, host, port, limit=READ_CHUNK * 4)
        return self.server

    async def stop(self) -> None:
        """Stop accepting and end every station's connection (Server.close leaves them open in 3.11)."""
        if self.server is not None:
            self.server.close()
            for writer in list(self._open):
                writer.close()
            await self.server.wait_closed()
            self.server = None

    def _reject(self, peer: str, why: str) -> None:
        self.counts["rejected"] += 1
        log.warning("sl651-centre: %s: frame dropped: %s", peer, why)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = (writer.get_extra_info("peername") or ("?", "?"))[:2]
        peer = f"{host}:{port}"
        if self.connections >= self.config.max_connections:
            log.warning("sl651-centre: %s refused: %d connections open", peer, self.connections)
            writer.close()
            return
        self.connections += 1
        self._open.add(writer)
        frames, reassembler = FrameReader(), Reassembler(max_messages=8, max_bytes=1 << 20)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.config.idle_timeout):
                        data = await reader.read(READ_CHUNK)
                except TimeoutError:
                    log.info("sl651-centre: %s silent for %.0f s: closed", peer, self.config.idle_timeout)
                    break
                if not data:
                    break
                for got in frames.feed(data):
                    if isinstance(got, Sl651Error):
                        self._reject(peer, str(got))
                        continue
                    reply = await self.handle(got, peer, reassembler)
                    if reply:
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("sl651-centre: %s: connection ended: %s", peer, exc)
        finally:
            self.connections -= 1
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _now(self) -> datetime:
        return datetime.now(self.zone).replace(tzinfo=None, microsecond=0)

    async def handle(self, frame: Frame, peer: str, reassembler: Reassembler) -> bytes:
        """What to answer one frame from a station (b"" for nothing)."""
        self.counts["frames"] += 1
        station = frame.station_hex()
        if frame.direction is not Direction.UP:
            self._reject(peer, f"a downlink frame from station {station}")
            return b""
        if self.config.centre_address is not None and frame.centre != self.config.centre_address:
            self._reject(peer, f"station {station} addressed centre {frame.centre}")
            return b""
        if self.allowed is not None and station not in self.allowed:
            self._reject(peer, f"station {station} is not in the stations list")
            return b""
        whole = reassembler.add(frame)
        if whole is None:
            missing = reassembler.missing(frame)
            if frame.end == 0x03 and missing:  # ETX: the last packet came and some are missing
                return confirmation(frame, 0, self._now(), NAK, missing[0])
            return b""
        try:
            message = decode_message(whole)
        except Sl651Error as exc:
            self._reject(peer, f"station {station} function {frame.function:02X}: {exc}")
            return b""
        body = message.body
        assert body is not None
        if frame.function == 0x2F:
            self.counts["keepalives"] += 1
            return b""  # no downlink for a keep-alive (6.6.4.2)
        if self.dedup.seen(message):
            self.counts["duplicates"] += 1
            return self._confirm(frame, body.serial)
        obs = observations(message)
        if obs:
            topic, payload = envelope(self.config, obs)
            try:
                await self.publisher.publish(topic, payload)
            except (TimeoutError, ConnectionError, aiomqtt.MqttError) as exc:
                self.counts["unconfirmed"] += 1
                log.warning("sl651-centre: station %s serial %d not confirmed: broker did not take it (%s)",
                            station, body.serial, exc or type(exc).__name__)
                return b""
            self.counts["published"] += 1
        self.dedup.add(message)
        return self._confirm(frame, body.serial) if frame.function in DATA_REPORTS else b""

    def _confirm(self, frame: Frame, serial: int) -> bytes:
        if frame.function not in DATA_REPORTS:
            return b""
        return confirmation(frame, serial, self._now(), self.end)


def load_config(args: argparse.Namespace) -> CentreConfig:
    """The file (if any), then the flags over it."""
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        # The config's bounded YAML loader with file:line:column errors (the CLI layer, not the receiver).
        from gateway.config.loader import validate_document
        from gateway.config.yamlmarks import load_marked

        data = dict(validate_document(load_marked(args.config), CentreConfig).model_dump(exclude_unset=True))
    for key in ("listen", "broker", "centre_address", "topic_prefix"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    if getattr(args, "stations", None):
        data["stations"] = [s.strip() for s in args.stations.split(",") if s.strip()]
    return CentreConfig.model_validate(data)


async def serve(config: CentreConfig, ready: asyncio.Event | None = None) -> None:
    publisher = Publisher(config)
    centre = Centre(config, publisher)
    server = await centre.start()
    sockets = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
    log.info("sl651-centre: listening on %s, publishing to %s under %s", sockets, config.broker, config.topic_prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        mqtt = tg.create_task(publisher.run())
        async with server:
            await stop.wait()
        mqtt.cancel()
    log.info("sl651-centre: stopped after %.0f s: %s", time.monotonic() - started, centre.counts)


def main(args: argparse.Namespace) -> int:
    from gateway.config.errors import ConfigError
    from gateway.config.yamlmarks import ConfigSyntaxError

    try:
        config = load_config(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 1
    except (ConfigSyntaxError, ValueError) as exc:  # unreadable YAML, a flag that does not validate
        print(f"sl651-centre: {exc}", file=sys.stderr)
        return 1
    asyncio.run(serve(config))
    return 0
