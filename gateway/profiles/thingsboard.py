"""The `thingsboard` profile: the ThingsBoard MQTT gateway API, so a site reports to ThingsBoard unchanged.

The gateway is one ThingsBoard device ("Is gateway" enabled, its access token as the
MQTT username); the field devices behind it are ThingsBoard devices named from the
point ids (``ThingsboardOptions``):

* ``v1/gateway/connect``    ``{"device": name, "type": profile}`` before a device's first telemetry
                            in each connection (and for every known device on reconnect);
* ``v1/gateway/telemetry``  ``{name: [{"ts": ms, "values": {key: value, key_quality: q}}]}``;
* ``v1/gateway/attributes`` client attributes ``{name: {key_unit: unit}}`` once per connection;
* ``v1/gateway/rpc``        subscribed; requests ``{"device", "data": {"id", "method", "params"}}``,
                            replies ``{"device", "id", "data"}`` on the same topic;
* alarms, evidence and events are telemetry of the gateway device itself
  (``v1/devices/me/telemetry``, the value is the record as JSON with its seq);
  RPC to the gateway device itself arrives on ``v1/devices/me/rpc/request/<id>``.

ThingsBoard stores telemetry keyed by (device, key, ts): a record sent twice after a
dropped PUBACK overwrites itself, so at-least-once delivery needs no extra dedup there.
ThingsBoard cannot store null: a failed read sends only ``<key>_quality``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from gateway.journal import JournalRecord
from gateway.profiles.base import InboundCommand
from gateway.profiles.options import ThingsboardOptions
from gateway.profiles.tb_telemetry import DeviceTelemetry, PointRoute, json_text
from gateway.shared import OutboundMessage, PayloadProfileName, RecordClass

log = logging.getLogger("fieldgate.profiles.thingsboard")

CONNECT = "v1/gateway/connect"
TELEMETRY = "v1/gateway/telemetry"
ATTRIBUTES = "v1/gateway/attributes"
RPC = "v1/gateway/rpc"
OWN_TELEMETRY = "v1/devices/me/telemetry"
OWN_ATTRIBUTES = "v1/devices/me/attributes"
OWN_RPC_REQUEST = "v1/devices/me/rpc/request/"
OWN_RPC_RESPONSE = "v1/devices/me/rpc/response/"

MAX_COMMAND_BYTES = 64 * 1024
# Devices come from point ids in the config; this only guards against a runaway key space.
MAX_DEVICES = 10_000


# The stored body, parsed without json.loads' wrapper (no whitespace scans: the journal wrote it compact).
_decode = json.JSONDecoder().raw_decode


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)


class ThingsboardProfile:
    name: PayloadProfileName = "thingsboard"

    def __init__(self, gateway_id: str, options: ThingsboardOptions) -> None:
        self.gateway_id = gateway_id
        self.options = options
        self._known: dict[str, str] = {}  # ThingsBoard device name → fieldgate device (point prefix)
        self._announced: set[str] = set()  # connected in this MQTT session
        self._units_sent: set[tuple[str, str]] = set()
        # point -> its route: the names are worked out and encoded once per point, not once per record. Points
        # are bounded by the config; the bound is for records of points no longer configured.
        self._routes: dict[str, PointRoute] = {}
        for device in dict.fromkeys(options.device_of_point.values()):
            self._remember(device)

    # ---- naming ----------------------------------------------------------------------------

    def device_name(self, device: str) -> str:
        return self.options.device_name.format(gateway=self.gateway_id, device=device)

    def route(self, point: str) -> PointRoute:
        """Where a point's readings go: its ThingsBoard device (None for the gateway itself) and key."""
        found = self._routes.get(point)
        if found is None:
            device, key = self._route(point)
            found = PointRoute.of(device, key, self.options.quality_suffix)
            if len(self._routes) < MAX_DEVICES * 10:
                self._routes[point] = found
        return found

    def _route(self, point: str) -> tuple[str | None, str]:
        mapped = self.options.device_of_point.get(point)
        if mapped is not None:
            return self.device_name(mapped), point
        device, sep, key = point.partition(self.options.device_separator)
        if not sep or not device or not key:
            return None, point
        return self._remember(device), key

    def _remember(self, device: str) -> str:
        name = self.device_name(device)
        if name not in self._known and len(self._known) < MAX_DEVICES:
            self._known[name] = device
        return name

    # ---- records → messages ----------------------------------------------------------------

    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]:
        """Connects for new devices, then one telemetry message for devices, one for the gateway itself."""
        del now  # ThingsBoard places replayed records by their own ts; no historical flag needed
        telemetry = DeviceTelemetry()
        own: list[dict[str, Any]] = []
        own_seqs: list[int] = []
        attributes: dict[str, dict[str, str]] = {}
        telemetry.collect(records, self._routes, self.route,
                          partial(self._decoded, telemetry=telemetry, own=own, own_seqs=own_seqs,
                                  attributes=attributes),
                          partial(self._unit, attributes))
        names = telemetry.names()
        messages = [self._connect(name) for name in names if name not in self._announced]
        self._announced.update(names)
        if attributes:
            messages.append(OutboundMessage(ATTRIBUTES, _dumps(attributes), ()))
        if telemetry:
            messages.append(OutboundMessage(TELEMETRY, telemetry.payload(), tuple(telemetry.seqs)))
        if own:
            messages.append(OutboundMessage(OWN_TELEMETRY, _dumps(own), tuple(own_seqs)))
        return messages

    def _decoded(self, record: JournalRecord, *, telemetry: DeviceTelemetry, own: list[dict[str, Any]],
                 own_seqs: list[int], attributes: dict[str, dict[str, str]]) -> None:
        """A record whose stored text is not a plain reading (or that has none): from its decoded body."""
        body = _decode(record.text)[0] if record.text is not None else record.body
        ms = _ms(body.get("ts", record.created))
        if "point" in body and "q" in body:
            route = self.route(str(body["point"]))
            values = self._values(record.cls, body, route.key)
            if route.device is None:
                own.append({"ts": ms, "values": values})
                own_seqs.append(record.seq)
                return
            fields = tuple(json_text(key) + ":" + json_text(value) for key, value in values.items())
            telemetry.add(route, ms, tuple(values), fields, record.seq)
            unit = str(body.get("unit") or "")
            if unit:
                self._unit(attributes, route, unit)
        else:
            kind = str(body.get("kind") or RecordClass(record.cls).label)
            own.append({"ts": ms, "values": {kind: {**body, "seq": record.seq}}})
            own_seqs.append(record.seq)

    def _unit(self, attributes: dict[str, dict[str, str]], route: PointRoute, unit: str) -> None:
        """A point's unit goes as the client attribute ``<key>_unit`` once per connection."""
        assert route.device is not None
        if (route.device, route.key) not in self._units_sent:
            self._units_sent.add((route.device, route.key))
            attributes.setdefault(route.device, {})[f"{route.key}_unit"] = unit

    def _values(self, cls: RecordClass, body: dict[str, Any], key: str) -> dict[str, Any]:
        quality = str(body.get("q", "good"))
        values: dict[str, Any] = {}
        value = body.get("value")
        if value is not None and quality in ("good", "uncertain"):
            values[key] = value
        # The quality goes along when it is not good and when it changed (back to good): a
        # dashboard then shows the latest quality, never a stale "comm_fail". (_stored_fields: the same.)
        if quality != "good" or cls == RecordClass.STATE or not values:
            values[f"{key}{self.options.quality_suffix}"] = quality
        return values

    def _connect(self, name: str) -> OutboundMessage:
        body: dict[str, Any] = {"device": name}
        if self.options.device_type:
            body["type"] = self.options.device_type
        return OutboundMessage(CONNECT, _dumps(body), ())

    # ---- the MQTT session --------------------------------------------------------------------

    def status_topic(self) -> str | None:
        # ThingsBoard tracks the gateway's connection itself and ignores retained messages.
        return None

    def status(self, state: str) -> bytes:
        return _dumps({"fieldgate_state": state})

    def subscriptions(self) -> list[str]:
        return [RPC, ATTRIBUTES, OWN_RPC_REQUEST + "+", OWN_ATTRIBUTES]

    def on_connect(self) -> list[OutboundMessage]:
        """A new connection: announce every known device again and resend units."""
        self._announced = set(self._known)
        self._units_sent.clear()
        messages = [self._connect(name) for name in self._known]
        messages.append(OutboundMessage(OWN_ATTRIBUTES, _dumps({"fieldgate_gateway": self.gateway_id,
                                                                "fieldgate_profile": self.name}), ()))
        return messages

    def reply_topic(self, suffix: str) -> str:
        return suffix  # ThingsBoard reply topics are absolute

    # ---- commands from ThingsBoard -------------------------------------------------------------

    def decode_command(self, topic: str, payload: bytes) -> InboundCommand | None:
        """An RPC request or a shared-attribute update; None (and a log line) for anything malformed."""
        if len(payload) > MAX_COMMAND_BYTES:
            log.warning("thingsboard: %d-byte message on %s ignored (larger than %d)", len(payload), topic,
                        MAX_COMMAND_BYTES)
            return None
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            log.warning("thingsboard: message on %s is not JSON; ignored", topic)
            return None
        if not isinstance(body, dict):
            log.warning("thingsboard: message on %s is not a JSON object; ignored", topic)
            return None
        if topic == RPC:
            data = body.get("data")
            device = body.get("device")
            if not isinstance(device, str) or not isinstance(data, dict) or not isinstance(data.get("method"), str):
                log.warning("thingsboard: RPC without device/data/method ignored: %.200s", payload)
                return None
            request_id = data.get("id")
            return InboundCommand("rpc", topic, data["method"], data.get("params"),
                                  request_id if isinstance(request_id, int | str) else None,
                                  device, self._known.get(device))
        if topic.startswith(OWN_RPC_REQUEST):
            request_id = topic[len(OWN_RPC_REQUEST):]
            if not request_id or "/" in request_id or not isinstance(body.get("method"), str):
                log.warning("thingsboard: gateway RPC without id or method ignored: %s", topic)
                return None
            return InboundCommand("rpc", topic, body["method"], body.get("params"), request_id)
        if topic == ATTRIBUTES:
            device, data = body.get("device"), body.get("data")
            if not isinstance(device, str) or not isinstance(data, dict):
                log.warning("thingsboard: attribute update without device/data ignored: %.200s", payload)
                return None
            return InboundCommand("attributes", topic, "attributes", data, None, device, self._known.get(device))
        if topic == OWN_ATTRIBUTES:
            return InboundCommand("attributes", topic, "attributes", body)
        return None

    def encode_reply(self, command: InboundCommand, result: Any) -> tuple[str, bytes]:
        """(topic, payload) of the reply to an RPC: echo the id, as ThingsBoard requires."""
        if command.device is None:
            return f"{OWN_RPC_RESPONSE}{command.request_id}", _dumps(result)
        return RPC, _dumps({"device": command.device, "id": command.request_id, "data": result})
