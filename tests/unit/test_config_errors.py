"""Config mistakes give one precise line each: file:line:column: message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_site, load_site_text
from tests.unit.cli import fieldgate

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
gateway:
  id: gw-1
  state_dir: /tmp/x
buses:
  - type: modbus_tcp
    name: gauges
    host: 127.0.0.1
    devices:
      - name: level
        points:
          - id: level
            address: 0
links:
  - type: mqtt
    host: 127.0.0.1
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_site_text(text, "site.yaml")
    return caught.value.lines


def test_good_config_loads() -> None:
    site = load_site_text(GOOD, "site.yaml")
    assert site.buses[0].devices[0].points[0].id == "level"
    assert site.links[0].port == 1883


def test_misspelt_key_points_at_it_with_a_suggestion() -> None:
    lines = errors_of(GOOD.replace("    host: 127.0.0.1\n    devices", "    hots: 127.0.0.1\n    devices"))
    assert "site.yaml:7:5: buses[0].hots: unknown key 'hots' (did you mean 'host'?)" in lines
    assert any(line.startswith("site.yaml:5:") and "missing required key 'host'" in line for line in lines)


def test_misspelt_nested_key_suggests_from_the_right_model() -> None:
    lines = errors_of(GOOD.replace("            address: 0", "            adress: 0"))
    assert any(line.startswith("site.yaml:12:13:") and "(did you mean 'address'?)" in line for line in lines)


def test_unknown_driver_type() -> None:
    (line,) = errors_of(GOOD.replace("type: modbus_tcp", "type: modbus_tpc"))
    assert line.startswith("site.yaml:5:11: buses[0].type: unknown type 'modbus_tpc' (did you mean 'modbus_tcp'?)")


def test_wrong_type_and_range() -> None:
    lines = errors_of(GOOD.replace("            address: 0", "            address: -3\n            type: float33"))
    assert any(line.startswith("site.yaml:12:22:") for line in lines), lines
    assert any(line.startswith("site.yaml:13:19:") and "float32" in line for line in lines), lines


def test_bad_duration() -> None:
    text = GOOD.replace("      - name: level\n", "      - name: level\n        poll_interval: 5 minutes\n")
    (line,) = errors_of(text)
    assert line.startswith("site.yaml:10:24:") and "not a duration" in line


def test_yaml_syntax_error() -> None:
    (line,) = errors_of("gateway: {id: a\nbuses: []\n")
    assert line.startswith("site.yaml:2:") and "YAML syntax error" in line


def test_duplicate_key_is_an_error() -> None:
    (line,) = errors_of(GOOD + "links: []\n")
    assert line.startswith("site.yaml:16:1: duplicate key 'links' (first given at line 13)")


def test_duplicate_point_ids() -> None:
    text = GOOD.replace("          - id: level\n            address: 0",
                        "          - id: level\n            address: 0\n          - id: level\n            address: 1")
    (line,) = errors_of(text)
    assert "point id 'level' is used twice" in line


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    (line,) = errors_of("- just\n- a list\n")
    assert line.startswith("site.yaml:1:1:") and "mapping" in line
    with pytest.raises(ConfigError) as caught:
        load_site(tmp_path / "nope.yaml")
    assert caught.value.lines == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(GOOD.replace("host: 127.0.0.1\n    devices", "hots: 127.0.0.1\n    devices"))
    run = fieldgate("validate", str(bad))
    assert run.returncode == 1
    assert f"{bad}:7:5: buses[0].hots: unknown key 'hots' (did you mean 'host'?)" in run.stderr
    assert "Traceback" not in run.stderr
    good = fieldgate("validate", str(ROOT / "config" / "demo.yaml"), "--explain")
    assert good.returncode == 0, good.stderr
    assert "read holding 0..1" in good.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path: Path) -> None:
    load_site(path)


def test_schema_command_prints_json_schema() -> None:
    import json

    run = fieldgate("schema")
    schema = json.loads(run.stdout)
    assert "buses" in schema["properties"]


def test_decode_cli(tmp_path: Path) -> None:
    from gateway import compact

    site = tmp_path / "site.yaml"
    site.write_text(GOOD + "satellite: {gateway_number: 42, aliases: {1: level}}\n")
    alarm = compact.CompactAlarm(seq=9, time=1_800_000_000, point="level", rule=3, level=3, value=152.5, text="高水位")
    data = compact.encode_alarm(alarm, gateway=42, aliases=compact.AliasTable({1: "level"}))
    run = fieldgate("decode", data.hex(), "--config", str(site))
    assert run.returncode == 0, run.stderr
    import json

    out = json.loads(run.stdout)
    assert out["kind"] == "alarm" and out["gateway"] == 42 and out["seqs"] == [9]
    assert out["alarm"]["point"] == "level" and out["alarm"]["value"] == 152.5 and out["alarm"]["text"] == "高水位"
    bad = fieldgate("decode", "1122")
    assert bad.returncode == 1 and "not a valid compact message" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_warns_about_files_it_cannot_read_here(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GOOD + f"""cameras:
  - {{type: camera, name: cam, source: {tmp_path / 'none.avi'}, detector: {{model: {tmp_path / 'gone.yaml'}}}}}
""")
    run = fieldgate("validate", str(site))
    assert run.returncode == 0, run.stderr  # warnings: the box may have what the laptop lacks
    assert f"{site}: warning: cameras[0].detector.model: " in run.stdout and "gone.yaml" in run.stdout


def test_cross_section_errors_are_all_reported_each_at_its_value() -> None:
    text = GOOD + """\
  - type: beidou
    port: /dev/ttyUSB1
    dest: 1
commands:
  write_points: [level, nope]
satellite:
  ack_key_credential: ack
  aliases: {1: level, 2: ghost}
"""
    lines = errors_of(text)
    assert lines == [
        "site.yaml:20:25: commands.write_points[1]: unknown point 'nope'",
        "site.yaml:23:26: satellite.aliases.2: unknown point 'ghost'",
    ], lines


def test_a_repeated_name_points_at_the_repeat_and_names_the_first() -> None:
    second = "  - type: modbus_tcp\n    name: gauges\n    host: 127.0.0.2\n    devices:\n" \
             "      - {name: rain, points: [{id: rain, address: 0}]}\n"
    lines = errors_of(GOOD.replace("links:\n", second + "links:\n"))
    assert lines == ["site.yaml:14:11: buses[1].name: bus name 'gauges' is used twice (first at buses[0].name)"]


def test_section_cross_references_are_all_reported_each_at_its_value() -> None:
    text = GOOD + """\
broadcast:
  outputs: {horn: {type: http_trigger, url: 'http://10.0.0.9/on'}}
  clips: {drill: {file: drill.wav}}
  announce: {exercise: drill, test: missing}
  all_clear_clip: drill
  zones:
    dam: {outputs: [horn, siren]}
rules:
  - {type: threshold, id: high, point: level, above: 3}
  - {type: threshold, id: high, point: level, above: 4}
"""
    lines = errors_of(text)
    assert lines == [
        "site.yaml:19:37: broadcast.announce.test: unknown clip 'missing'",
        "site.yaml:22:27: broadcast.zones.dam.outputs[1]: unknown output 'siren'",
        "site.yaml:25:27: rules[1].id: rule id 'high' is used twice (first at rules[0])",
    ], lines
