"""One vocabulary for the YAML a technician writes: one baud name, one duration type, no unit suffixes."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.config import ConfigError, load_site_text
from gateway.config.site import full_site_model
from gateway.shared import Seconds
from tests.unit.cli import fieldgate

BEIDOU = """\
gateway: {id: t}
buses: [{type: modbus_tcp, name: b, host: 127.0.0.1, devices: [{name: d, points: [{id: level, address: 0}]}]}]
satellite: {aliases: {1: level}, ack_key_credential: ack}
links:
  - type: beidou
    port: /dev/ttyUSB1
    dest: 1
    reopen_delay: %s
"""

# A unit written into a name: reopen_delay_s, poll_ms, max_age_seconds. (`rise_per_min` is a rate.)
UNIT_SUFFIX = re.compile(r"_(s|ms|sec|secs|seconds|millis|minutes|hours)$")


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def site_models() -> list[type[BaseModel]]:
    """Every model a site file can reach, core and drivers alike."""
    found: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [full_site_model()]  # a file validates with the types it names
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            todo.extend(_models_in(field.annotation))
    return found


def yaml_keys() -> list[tuple[str, str]]:
    return [(f"{model.__module__}.{model.__name__}", field.alias or name)
            for model in site_models() for name, field in model.model_fields.items()]


@pytest.mark.parametrize(("written", "seconds"), [("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("10m", 600.0),
                                                  ("3", 3.0), ("0.25", 0.25)])
def test_a_duration_field_takes_a_unit_or_plain_seconds(written: str, seconds: float) -> None:
    site = load_site_text(BEIDOU % written, "site.yaml")
    assert site.links[0].reopen_delay == seconds  # type: ignore[union-attr]


@pytest.mark.parametrize("junk", ["soon", "5 sec", "-1", ".inf", "true", "5x"])
def test_a_duration_field_refuses_junk_at_its_position(junk: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site_text(BEIDOU % junk, "site.yaml")
    (line,) = caught.value.lines
    assert line.startswith("site.yaml:8:19: links[0].reopen_delay: "), line
    assert "duration" in line or "number" in line, line


def test_no_yaml_key_carries_a_unit_suffix() -> None:
    suffixed = [f"{model}.{key}" for model, key in yaml_keys() if UNIT_SUFFIX.search(key)]
    assert not suffixed, f"name the key without its unit and type it Seconds: {suffixed}"


def test_the_baud_rate_has_one_name() -> None:
    names = {key for _model, key in yaml_keys() if "baud" in key}
    assert names == {"baud"}


def test_every_time_field_is_seconds() -> None:
    """A float that holds a time is a Seconds (units accepted), found by the parser it runs."""
    marker = typing.get_args(Seconds)[-1]  # the duration's JSON Schema hook, carried by every Seconds
    plain = []
    for model in site_models():
        for name, field in model.model_fields.items():
            typed = marker in field.metadata or repr(marker) in repr(field.annotation)
            timeish = re.search(r"(timeout|interval|delay|window|expir|ttl|keepalive|backoff|"
                                r"after$|max_age|hold|within|warmup|duration|skew|heartbeat|time_unit)", name)
            if timeish and not typed and "float" in repr(field.annotation):
                plain.append(f"{model.__name__}.{name}")
    assert not plain, f"time fields not typed Seconds: {plain}"


def _walk(node: Any) -> typing.Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_schema_lets_an_editor_write_durations_with_units() -> None:
    run = fieldgate("schema")
    assert run.returncode == 0, run.stderr
    schema = json.loads(run.stdout)
    device = schema["$defs"]["DeviceConfig"]["properties"]["poll_interval"]
    number, text = device["anyOf"]
    assert number == {"type": "number", "minimum": 0}
    assert all(re.match(text["pattern"], written) for written in ("5s", "500ms", "2m", "1h", "3"))
    assert not re.match(text["pattern"], "soon")
    # pydantic's own keywords (ge, gt, le, lt) leaking into the schema would mean a bound it cannot show.
    leaked = [node for node in _walk(schema) if {"ge", "gt", "le", "lt"} & set(node)]
    assert not leaked, leaked


def test_models_are_found() -> None:
    names = {model.__name__ for model in site_models()}
    assert {"BeidouConfig", "IridiumConfig", "ModbusRtuBus", "SerialLineBus", "ModbusBoardConfig",
            "JournalSettings", "Persistence", "PatternConfig", "CameraConfig"} <= names
