"""OpenMetrics text exposition of a gateway snapshot (``/metrics``).

Format: https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md —
one ``# TYPE``/``# HELP`` (and ``# UNIT`` where the name ends in the unit) per family, the samples
of a family together, counters sampled as ``<family>_total``, label values escaped, ``# EOF`` last.
Every key of the snapshot may be missing; a family with no samples is simply not written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PREFIX = "fieldgate_"
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    type: str  # counter | gauge | info | unknown
    help: str
    unit: str = ""
    samples: dict[Labels, float] = field(default_factory=dict)  # one sample per label set

    def add(self, value: Any, **labels: Any) -> None:
        number = as_number(value)
        if number is None:
            return
        key = tuple((k, str(v)) for k, v in labels.items())
        self.samples[key] = number

    def render(self) -> list[str]:
        if not self.samples:
            return []
        lines = [f"# TYPE {self.name} {self.type}", f"# HELP {self.name} {escape_help(self.help)}"]
        if self.unit:
            lines.append(f"# UNIT {self.name} {self.unit}")
        suffix = {"counter": "_total", "info": "_info"}.get(self.type, "")
        for labels, value in self.samples.items():
            lines.append(f"{self.name}{suffix}{render_labels(labels)} {render_number(value)}")
        return lines


def as_number(value: Any) -> float | None:
    """A sample value from a snapshot field: numbers and booleans; anything else is skipped."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def render_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels) + "}"


def metric_name(text: str) -> str:
    """A snapshot counter key as a metric-name fragment (anything outside [a-zA-Z0-9_] → _)."""
    name = _NAME_CHARS.sub("_", text).strip("_") or "unnamed"
    return name if not name[0].isdigit() else "_" + name


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class Registry:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def family(self, short: str, type_: str, help_: str, unit: str = "") -> Family:
        name = PREFIX + short
        if name not in self.families:
            self.families[name] = Family(name, type_, help_, unit)
        return self.families[name]

    def render(self) -> str:
        lines = [line for fam in self.families.values() for line in fam.render()]
        return "\n".join([*lines, "# EOF"]) + "\n"


def render_metrics(snapshot: Mapping[str, Any]) -> str:
    reg = Registry()
    _gateway(reg, _mapping(snapshot.get("gateway")))
    counters = _mapping(snapshot.get("counters"))
    _points(reg, _dicts(snapshot.get("points")), counters)
    _devices(reg, _dicts(snapshot.get("devices")), _mapping(counters.get("errors_by_device")))
    _journal(reg, _mapping(snapshot.get("journal")))
    _links(reg, _dicts(snapshot.get("links")))
    _alarms(reg, _dicts(snapshot.get("alarms")), counters)
    _loops(reg, _dicts(snapshot.get("loops")))
    _cameras(reg, _dicts(snapshot.get("cameras")))
    _other_counters(reg, counters)
    return reg.render()


def _gateway(reg: Registry, gw: Mapping[str, Any]) -> None:
    if gw.get("id") is not None:
        reg.family("gateway", "info", "this gateway").add(1, id=gw.get("id"), name=gw.get("name") or "")
    reg.family("uptime_seconds", "gauge", "seconds since the daemon started", "seconds").add(gw.get("uptime_s"))
    reg.family("start_time_seconds", "gauge", "daemon start, Unix epoch", "seconds").add(gw.get("started"))


def _points(reg: Registry, points: list[Mapping[str, Any]], counters: Mapping[str, Any]) -> None:
    reg.family("points_read", "counter", "samples taken from field devices (any quality)").add(
        counters.get("points_read"))
    value = reg.family("point_value", "gauge", "latest good value of a numeric point")
    good = reg.family("point_good", "gauge", "1 when the point's latest sample has quality good")
    age = reg.family("point_age_seconds", "gauge", "age of the point's latest sample", "seconds")
    for p in points:
        name = str(p.get("point", ""))
        if not name:
            continue
        if p.get("q") == "good":
            value.add(p.get("value"), point=name, unit=p.get("unit") or "")
        if p.get("q") is not None:
            good.add(p.get("q") == "good", point=name)
        age.add(p.get("age_s"), point=name)


def _devices(reg: Registry, devices: list[Mapping[str, Any]], errors_by_device: Mapping[str, Any]) -> None:
    online = reg.family("device_online", "gauge", "1 when the device answered its last poll")
    polls = reg.family("device_polls", "counter", "polls of the device")
    errors = reg.family("device_errors", "counter", "failed polls of the device (timeouts, bad frames, exceptions)")
    seen: set[str] = set()
    for d in devices:
        name = str(d.get("device", ""))
        if not name:
            continue
        labels = {"bus": str(d.get("bus", "")), "device": name}
        seen.add(name)
        online.add(d.get("online"), **labels)
        polls.add(d.get("polls"), **labels)
        errors.add(d.get("errors", errors_by_device.get(name)), **labels)
    for name, count in errors_by_device.items():
        if name not in seen:
            errors.add(count, bus="", device=str(name))


def _journal(reg: Registry, journal: Mapping[str, Any]) -> None:
    reg.family("journal_backlog", "gauge", "journalled records not yet acknowledged upstream").add(
        journal.get("backlog"))
    reg.family("journal_oldest_age_seconds", "gauge", "age of the oldest unacknowledged record",
               "seconds").add(journal.get("oldest_age_s", 0 if journal.get("backlog") == 0 else None))
    reg.family("journal_committed", "counter", "records committed to the journal").add(journal.get("committed"))
    reg.family("journal_drops", "counter", "records dropped (journal full or evicted unsent)").add(
        journal.get("drops"))


def _links(reg: Registry, links: list[Mapping[str, Any]]) -> None:
    connected = reg.family("link_connected", "gauge", "1 while the uplink is connected")
    sent = reg.family("link_sent_messages", "counter", "messages the far side acknowledged")
    sent_bytes = reg.family("link_sent_bytes", "counter", "payload bytes the far side acknowledged", "bytes")
    failed = reg.family("link_failed_sends", "counter", "sends that failed and will be retried")
    backlog = reg.family("link_backlog", "gauge", "records this link still owes")
    dropped = reg.family("link_command_messages_dropped", "counter",
                         "command-topic messages dropped before handling (flood, oversize); never a QoS 1 command")
    # satellite links: what outsiders sent that was not believed or not answered (docs/satellite.md)
    guarded = [
        (reg.family("link_refused_acks", "counter", "platform ACKs refused: bad MAC, wrong gateway, no key"),
         "refused_acks"),
        (reg.family("link_suppressed_replies", "counter", "replies to rejected commands not sent (rate limit)"),
         "suppressed_replies"),
        (reg.family("link_foreign_messages", "counter", "incoming messages from cards that are not the platform's"),
         "foreign_messages"),
    ]
    for link in links:
        name = str(link.get("name", ""))
        if not name:
            continue
        connected.add(link.get("connected"), link=name, type=str(link.get("type", "")))
        sent.add(link.get("sent_messages"), link=name)
        sent_bytes.add(link.get("sent_bytes"), link=name)
        failed.add(link.get("failed_sends"), link=name)
        backlog.add(link.get("backlog"), link=name)
        for reason, count in _mapping(link.get("commands_dropped")).items():
            dropped.add(count, link=name, reason=str(reason))
        for family, key in guarded:
            family.add(link.get(key), link=name)


def _alarms(reg: Registry, alarms: list[Mapping[str, Any]], counters: Mapping[str, Any]) -> None:
    reg.family("alarms_raised", "counter", "alarms raised since start").add(counters.get("alarms_raised"))
    by_state: dict[tuple[str, str], int] = {}
    for alarm in alarms:
        key = (str(alarm.get("severity", "")), str(alarm.get("state", "")))
        by_state[key] = by_state.get(key, 0) + 1
    current = reg.family("alarms", "gauge", "recent alarms by severity and state")
    for (severity, state), count in sorted(by_state.items()):
        current.add(count, severity=severity, state=state)


def _loops(reg: Registry, loops: list[Mapping[str, Any]]) -> None:
    overdue = reg.family("loop_overdue", "gauge", "1 while a critical loop has missed its progress deadline")
    for loop in loops:
        if loop.get("name"):
            overdue.add(bool(loop.get("overdue")), loop=str(loop["name"]))


def _cameras(reg: Registry, cameras: list[Mapping[str, Any]]) -> None:
    failed = reg.family("camera_failed", "gauge", "1 while a camera's model is refused (configuration fault)")
    for camera in cameras:
        if camera.get("name"):
            failed.add(camera.get("state") == "failed", camera=str(camera["name"]))


_KNOWN_COUNTERS = {"points_read", "errors_by_device", "alarms_raised"}


def _other_counters(reg: Registry, counters: Mapping[str, Any]) -> None:
    """Inference time, and any further numeric counter the daemon adds, without a code change here."""
    reg.family("inference_last_seconds", "gauge", "duration of the latest vision inference", "seconds").add(
        _ms_to_s(counters.get("inference_ms_last")))
    extra = reg.family("daemon_counter", "unknown", "other daemon counters, by name")
    for key, value in _numeric_items(counters):
        if key not in _KNOWN_COUNTERS and key != "inference_ms_last":
            extra.add(value, name=metric_name(key))


def _ms_to_s(value: Any) -> float | None:
    number = as_number(value)
    return None if number is None or isinstance(value, bool) else number / 1000.0


def _numeric_items(counters: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    return ((str(k), v) for k, v in counters.items() if as_number(v) is not None and not isinstance(v, bool))
