"""Config text that becomes part of an MQTT topic is checked at load (issue #12 item 5).

`topic_prefix: fieldgate/+` used to be accepted: the gateway then published to a wildcard and
subscribed to `fieldgate/+/<gw>/cmd/#`, every other site's commands included. Each refusal is a
file:line:col line saying which rule the value breaks; `fieldgate schema` shows the same pattern.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.config import ConfigError, load_site_text
from gateway.shared import MAX_TOPIC_PREFIX, TOPIC_PREFIX_PATTERN
from tests.unit.cli import fieldgate

HEAD = "gateway: {id: gw, state_dir: /tmp/fieldgate-topics}\n"


def mqtt_site(**keys: str) -> str:
    extra = "".join(f"\n    {key}: {json.dumps(value)}" for key, value in keys.items())
    return HEAD + f"links:\n  - type: mqtt\n    host: 127.0.0.1{extra}\n"


def only_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_site_text(text, "site.yaml")
    (line,) = caught.value.lines
    return line


BAD_PREFIXES = {
    "fieldgate/+": "'+' is an MQTT wildcard",
    "fieldgate/#": "'#' is an MQTT wildcard",
    "+": "'+' is an MQTT wildcard",
    "$SYS/broker": "topics that start with '$' belong to the broker ($SYS)",
    "/fieldgate": "it has an empty level (a leading or doubled '/')",
    "fieldgate//v1": "it has an empty level (a leading or doubled '/')",
    "": "it is empty",
    "field gate": "it holds ' ' (a space or control character)",
    "fieldgate\u0000/v1": "it holds '\\x00' (a space or control character)",
    "fieldgate/\u0085": "it holds '\\x85' (a space or control character)",
    "x" * (MAX_TOPIC_PREFIX + 1): f"it is {MAX_TOPIC_PREFIX + 1} characters long (at most {MAX_TOPIC_PREFIX})",
}
GOOD_PREFIXES = ["fieldgate/v1", "fieldgate/v1/", "county-7/water.level", "水库/v1", "a$b", "x" * MAX_TOPIC_PREFIX]


@pytest.mark.parametrize("prefix", sorted(BAD_PREFIXES), ids=lambda p: repr(p[:20]))
def test_a_topic_prefix_that_would_change_the_topic_is_refused_at_its_line(prefix: str) -> None:
    line = only_error(mqtt_site(topic_prefix=prefix))
    assert line.startswith("site.yaml:5:19: links[0].topic_prefix: ") and line.endswith(BAD_PREFIXES[prefix]), line


@pytest.mark.parametrize("prefix", GOOD_PREFIXES)
def test_plain_topic_prefixes_load(prefix: str) -> None:
    site = load_site_text(mqtt_site(topic_prefix=prefix), "site.yaml")
    assert site.links[0].topic_prefix == prefix


@pytest.fixture(scope="module")
def shown_in_schema() -> dict[str, Any]:
    schema = json.loads(fieldgate("schema").stdout)
    shown: dict[str, Any] = schema["$defs"]["MqttLinkConfig"]["properties"]["topic_prefix"]
    return shown


@pytest.mark.parametrize("prefix", [*BAD_PREFIXES, *GOOD_PREFIXES], ids=lambda p: repr(p[:20]))
def test_the_schema_pattern_says_what_the_loader_does(prefix: str, shown_in_schema: dict[str, Any]) -> None:
    assert shown_in_schema["pattern"] == TOPIC_PREFIX_PATTERN and shown_in_schema["maxLength"] == MAX_TOPIC_PREFIX
    by_schema = bool(re.fullmatch(shown_in_schema["pattern"], prefix)) and len(prefix) <= MAX_TOPIC_PREFIX
    assert by_schema == (prefix in GOOD_PREFIXES)


@pytest.mark.parametrize(("text", "where"), [
    (mqtt_site(name="county/+"), "site.yaml:5:11: links[0].name: String should match pattern"),
    (mqtt_site(name="n" * 65), "site.yaml:5:11: links[0].name: String should match pattern"),
    (HEAD.replace("id: gw", "id: '+'"), "site.yaml:1:15: gateway.id: String should match pattern"),
    (HEAD + "satellite: {aliases: {1: x}}\nlinks:\n  - {type: beidou, name: 'bei dou', port: /dev/null, dest: 1}\n",
     "site.yaml:4:26: links[0].name: String should match pattern"),
    (HEAD + "satellite: {aliases: {1: x}}\nlinks:\n  - {type: iridium_sbd, name: 'a/b', port: /dev/null}\n",
     "site.yaml:4:31: links[0].name: String should match pattern"),
    (mqtt_site(client_id="gw\u0000"), "site.yaml:5:16: links[0].client_id: String should match pattern"),
    (mqtt_site(client_id="c" * 129), "site.yaml:5:16: links[0].client_id: String should have at most 128"),
])
def test_names_that_reach_the_broker_or_the_logs_are_plain(text: str, where: str) -> None:
    assert only_error(text).startswith(where)


def test_thingsboard_device_names_are_plain_text() -> None:
    tb = HEAD + "links:\n  - type: mqtt\n    host: 127.0.0.1\n    profile: thingsboard\n    thingsboard:\n"
    line = only_error(tb + '      device_name: "{gateway}.{device}\\n"\n')
    assert line.startswith("site.yaml:7:20: links[0].thingsboard.device_name: String should match pattern"), line
    line = only_error(tb + '      device_of_point: {a.b: "pump\\u0000"}\n')
    assert line.startswith("site.yaml:7:30: links[0].thingsboard.device_of_point.a.b: String should match"), line
    line = only_error(tb + f"      device_name: '{{device}}{'x' * 300}'\n")
    assert "links[0].thingsboard.device_name: String should have at most 255 characters" in line, line
