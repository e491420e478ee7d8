"""The body of one ``v1/gateway/telemetry`` message of the thingsboard profile, built as JSON text.

``{"<device>": [{"ts": ms, "values": {"<key>": value, ...}}, ...], ...}``: devices in the order of
their first record, entries in record order, readings of one device taken in the same millisecond in
one entry (while their keys differ). Decoding every stored body, a dict per reading and ``json.dumps``
of the whole message cost 2.5–2.9 µs per record against 0.6–0.9 µs for the fieldgate profile's
envelope (bench/profiles/README.md, ThingsBoard profile pass). Here a stored reading is matched by
``STORED_READING`` and its value's JSON text goes into the message as it was stored, with each point's
names encoded once (``PointRoute``). The bytes are those ``json.dumps(body, separators=(",", ":"),
ensure_ascii=False)`` gives for the same body (tests/unit/test_profiles_thingsboard_bytes.py holds the
two side by side).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.journal import JournalRecord
from gateway.shared import RecordClass

# A reading as the journal stores it: Reading.to_json through encode_body (gateway/journal/records.py), so
# these keys in this order, compact. Strings are taken only without escapes and values only when they are
# not strings: then the stored text is what encoding the decoded value gives again (the writer is
# Python's json with ensure_ascii=False: an int in decimal, a float its repr, NaN/Infinity as json writes
# them). The number patterns only tell a number from a string; the text is the writer's valid JSON.
# Anything else (a string value, an escape, keys in another order) is decoded as before.
STORED_READING = re.compile(
    r'\{"point":"([^"\\]*)","value":(-?[0-9][0-9.eE+-]*|true|false|null|NaN|-?Infinity),"unit":"([^"\\]*)",'
    r'"q":"([a-z_]+)","ts":([0-9][0-9.eE+-]*)[,}]'
)


def json_text(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PointRoute:
    """Where one point's readings go, with the JSON text of its names made once."""

    device: str | None  # ThingsBoard device name; None: the gateway device itself
    key: str  # telemetry key
    quality_key: str  # key of the quality sent beside the value
    device_json: str  # '"<device>"'
    key_json: str  # '"<key>":'
    quality_json: str  # '"<key>_quality":'
    value_keys: tuple[str, ...]  # the keys of a record that sends its value, both, its quality
    both_keys: tuple[str, ...]
    quality_keys: tuple[str, ...]

    @classmethod
    def of(cls, device: str | None, key: str, quality_suffix: str) -> PointRoute:
        quality_key = key + quality_suffix
        return cls(device, key, quality_key, json_text(device) if device is not None else "",
                   json_text(key) + ":", json_text(quality_key) + ":", (key,), (key, quality_key), (quality_key,))


class _Entry:
    """One ``{"ts": ms, "values": {...}}`` of a device: its keys (for merging) and ``"key":value`` texts."""

    __slots__ = ("fields", "keys", "ms")

    def __init__(self, ms: int, keys: tuple[str, ...], fields: tuple[str, ...]) -> None:
        self.ms = ms
        self.keys = set(keys)
        self.fields = list(fields)


class DeviceTelemetry:
    """Readings of field devices collected for one telemetry message."""

    __slots__ = ("_devices", "seqs")

    def __init__(self) -> None:
        self._devices: dict[str, tuple[str, list[_Entry]]] = {}  # device name → (its JSON, entries)
        self.seqs: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._devices)

    def names(self) -> list[str]:
        """The devices, in the order of their first record."""
        return list(self._devices)

    def collect(self, records: Sequence[JournalRecord], routes: dict[str, PointRoute],
                route: Callable[[str], PointRoute], other: Callable[[JournalRecord], None],
                unit: Callable[[PointRoute, str], None]) -> None:
        """Every record in order: a stored reading of a field device is added here, any other to ``other``.

        ``routes`` is the profile's cache of ``route`` (looked up first: this runs per record); ``unit`` is
        told a reading's unit.
        """
        match = STORED_READING.match
        seqs = self.seqs
        last_ts, ms = "", 0  # the readings of one bus read share their ts: converted once
        entry: _Entry | None = None  # the last entry of ``device``, where the previous reading went
        device: str | None = None
        keys: tuple[str, ...]
        fields: tuple[str, ...]
        for record in records:
            found = match(record.text) if record.text is not None else None
            if found is None:
                other(record)
                entry = None  # ``other`` may have added an entry
                continue
            point, value, unit_text, quality, ts = found.groups()
            to = routes.get(point) or route(point)
            if to.device is None:
                other(record)
                continue
            if ts != last_ts:
                last_ts, ms = ts, round(float(ts) * 1000)
            if value != "null" and quality == "good" and record.cls != RecordClass.STATE:
                keys, fields = to.value_keys, (to.key_json + value,)
            else:
                keys, fields = stored_fields(to, record.cls, value, quality)
            seqs.append(record.seq)
            if to.device != device or entry is None:
                device = to.device
                entry = self._last(to)
            if entry is not None and entry.ms == ms and entry.keys.isdisjoint(keys):
                entry.keys.update(keys)
                entry.fields += fields
            else:
                entry = self._append(to, ms, keys, fields)
            if unit_text:
                unit(to, unit_text)

    def add(self, to: PointRoute, ms: int, keys: tuple[str, ...], fields: tuple[str, ...], seq: int) -> None:
        """One reading's values (``fields``: the ``"key":value`` texts of ``keys``, in order)."""
        self.seqs.append(seq)
        last = self._last(to)
        if last is not None and last.ms == ms and last.keys.isdisjoint(keys):
            last.keys.update(keys)
            last.fields += fields
        else:
            self._append(to, ms, keys, fields)

    def _last(self, to: PointRoute) -> _Entry | None:
        assert to.device is not None
        found = self._devices.get(to.device)
        return None if found is None else found[1][-1]

    def _append(self, to: PointRoute, ms: int, keys: tuple[str, ...], fields: tuple[str, ...]) -> _Entry:
        assert to.device is not None
        entry = _Entry(ms, keys, fields)
        found = self._devices.get(to.device)
        if found is None:
            self._devices[to.device] = (to.device_json, [entry])
        else:
            found[1].append(entry)
        return entry

    def payload(self) -> bytes:
        return ("{" + ",".join(
            name_json + ":[" + ",".join('{"ts":' + str(e.ms) + ',"values":{' + ",".join(e.fields) + "}}"
                                        for e in entries) + "]"
            for name_json, entries in self._devices.values()) + "}").encode()


def stored_fields(to: PointRoute, cls: RecordClass, value: str, quality: str
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(keys, ``"key":value`` texts) of a stored reading from the JSON text of its value: the profile's
    ``_values`` (the value if there is one and it is good or uncertain; the quality beside it when it is
    not good, on a state change, or alone)."""
    quality_field = to.quality_json + '"' + quality + '"'
    if value != "null" and (quality == "good" or quality == "uncertain"):
        if quality == "good" and cls != RecordClass.STATE:
            return to.value_keys, (to.key_json + value,)
        return to.both_keys, (to.key_json + value, quality_field)
    return to.quality_keys, (quality_field,)
