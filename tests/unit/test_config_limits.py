"""Hostile config files (issue #12): each is refused with one file:line:col line naming the limit it
crossed, by `validate`, `run` and reload alike (they share load_site). That `fieldgate validate` refuses them
in bounded time and memory, measured on a child process, is in tests/hil/test_config_limits.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_site, load_site_text
from gateway.config.yamlbounds import (
    HAVE_LIBYAML,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_DIGITS,
    MAX_NODES,
    MAX_SCALAR_CHARS,
    FastLoader,
    LimitExceeded,
    PureLoader,
    compose_bounded,
)

HEAD = "gateway: {id: gw, state_dir: /tmp/fieldgate-limits}\n"


def laughs(levels: int = 9, width: int = 10) -> str:
    """The billion laughs: 528 bytes that PyYAML expanded to 10**9 values (3.8 GB in 60 s)."""
    lines = [f"x0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return HEAD + "\n".join(lines) + "\n"


# name → (the file's text, the line:col and message it must be refused with)
HOSTILE = {
    "alias-bomb": (laughs(), "6:10: more than 20000 keys and values once aliases are expanded (limit: 20000)"),
    "recursive-alias": (HEAD + "loop: &x [1, *x]\n", "2:14: alias *x is inside the value &x it names"),
    "recursive-alias-in-mapping": (HEAD + "m: &m {a: {b: *m}}\n", "2:15: alias *m is inside the value &m it names"),
    "deep-flow": (HEAD + "x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 64 levels deep (limit: 64"),
    "deep-block": (HEAD + "x:\n" + "".join(" " * i + "- \n" for i in range(1, 80)),
                   "66:65: nested more than 64 levels deep (limit: 64 levels)"),
    "deep-by-alias": (HEAD + "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
                      "3:34: alias *a nests the document more than 64 levels deep (limit: 64 levels)"),
    "many-aliases": (HEAD + "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n",
                     f"3:{5 + 4 * MAX_ALIASES}: more than {MAX_ALIASES} aliases (limit: {MAX_ALIASES})"),
    "integer-100000-digits": (HEAD + "health_interval: " + "9" * 100_000 + "\n",
                              "2:18: a value of 100000 characters (limit: 65536 characters)"),
    "integer-31-digits": (HEAD + "health_interval: " + "1" * 31 + "\n",
                          "2:18: an integer of 31 digits (limit: 30 digits)"),
    "hex-integer": (HEAD + "health_interval: 0x" + "f" * 40 + "\n", "2:18: an integer of 42 digits (limit: 30"),
    "huge-string": (HEAD + "gateway_name: '" + "x" * (MAX_SCALAR_CHARS + 1) + "'\n",
                    f"2:15: a value of {MAX_SCALAR_CHARS + 1} characters (limit: {MAX_SCALAR_CHARS} characters)"),
    "huge-key": (HEAD + "? '" + "k" * (MAX_SCALAR_CHARS + 1) + "'\n: 1\n", "2:3: a value of 65537 characters"),
    "many-values": (HEAD + "x: [" + ",".join(["1"] * MAX_NODES) + "]\n",
                    f"more than {MAX_NODES} keys and values once aliases are expanded"),
    "unsafe-tag": (HEAD + "x: !!python/object/apply:os.system [reboot]\n",
                   "2:4: cannot read this value: the tag tag:yaml.org,2002:python/object/apply:os.system is not"),
    "unsafe-scalar-tag": (HEAD + "x: !!python/name:os.system\n", "2:4: cannot read this value: could not determine"),
    "bad-explicit-int": (HEAD + "x: !!int twelve\n", "2:4: cannot read 'twelve' as tag:yaml.org,2002:int"),
    "bad-explicit-bool": (HEAD + "x: !!bool maybe\n", "2:4: cannot read 'maybe' as tag:yaml.org,2002:bool"),
    "bad-timestamp": (HEAD + "x: !!timestamp noon\n", "2:4: cannot read 'noon'"),
    "nul-character": (HEAD + "x: a\x00b\n", "2:5: YAML syntax error: character #x0000"),
    "collection-key": (HEAD + "? [a, b]\n: 1\n", "2:3: mapping keys must be plain names"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_refused_at_the_spot_naming_the_limit(name: str, tmp_path: Path) -> None:
    text, want = HOSTILE[name]
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    (line,) = caught.value.lines
    assert line.startswith(f"{path}:") and want in line, line


@pytest.mark.parametrize("loader", [FastLoader, PureLoader], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize("name", ["alias-bomb", "recursive-alias", "deep-block", "deep-by-alias", "many-aliases",
                                  "integer-31-digits", "huge-string", "many-values"])
def test_both_parsers_keep_the_same_limits(name: str, loader: type[FastLoader | PureLoader]) -> None:
    text, want = HOSTILE[name]
    with pytest.raises(LimitExceeded) as caught:
        compose_bounded(text, loader)
    assert want.split(": ", 1)[-1].split(" (")[0] in caught.value.message


def test_the_box_uses_libyaml() -> None:
    # PyYAML's wheels include libyaml; without it the limits hold but a 1 MiB file takes seconds, not 0.1 s.
    assert HAVE_LIBYAML


def test_a_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + "# padding\n" * (MAX_FILE_BYTES // 10))
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert caught.value.lines == [f"{path}:1:1: the file holds {path.stat().st_size} bytes "
                                  f"(limit: {MAX_FILE_BYTES} bytes, 1 MiB)"]
    with pytest.raises(ConfigError) as caught:
        load_site("/dev/zero")  # no size to stat: still read no more than the limit
    assert caught.value.lines[0].startswith("/dev/zero:1:1: the file holds more bytes than that (limit:")


def test_files_just_inside_every_limit_load() -> None:
    nested = "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2)  # root mapping + key's value: 64 levels
    text = HEAD + "\n".join([
        f"health_interval: {'1' * MAX_INT_DIGITS}",
        f"gateway_x: &big '{'y' * (MAX_SCALAR_CHARS - 10)}'",
        f"nested: {nested}",
        "copies: [" + ", ".join(["*big"] * 10) + "]",
    ]) + "\n"
    with pytest.raises(ConfigError) as caught:  # only validation complains: the unknown keys
        load_site_text(text, "site.yaml")
    assert all("unknown key" in line for line in caught.value.lines), caught.value.lines
    node = compose_bounded(text)
    assert node is not None


def test_device_templates_count_toward_the_limit(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir()
    points = "\n".join(f"    - {{id: p{i}, address: {i}, type: uint16, scale: 0.1, unit: m}}" for i in range(200))
    (devices / "big-meter.yaml").write_text(f"description: x\nprovenance: x\ndevice:\n  points:\n{points}\n")
    entries = "\n".join(f"      - {{name: m{i}, template: big-meter, unit_id: {i + 1}}}" for i in range(20))
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + f"buses:\n  - type: modbus_rtu\n    name: line\n    port: /dev/null\n    devices:\n"
                    f"{entries}\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    (line,) = caught.value.lines
    assert f"device templates expand this site to more than {MAX_NODES} keys and values" in line, line
    assert line.startswith(f"{path}:") and ": template" not in line


@pytest.mark.parametrize("name", ["../../../etc/passwd", "r" * 300, "radar\u0000level", ".hidden", "a b"])
def test_a_template_name_is_a_file_name_not_a_path(name: str) -> None:
    # Found by fuzz/targets/yaml_config.py: a 300-character name raised OSError (name too long).
    text = HEAD + ("buses:\n  - type: modbus_rtu\n    name: line\n    port: /dev/null\n    devices:\n"
                   f"      - {{name: m, template: {json.dumps(name)}, unit_id: 1}}\n")
    with pytest.raises(ConfigError) as caught:
        load_site_text(text, "site.yaml")
    assert caught.value.lines == ["site.yaml:7:29: template: takes a template name such as radar-level"]


def test_text_that_was_never_utf8_is_refused_at_its_spot() -> None:
    with pytest.raises(ConfigError) as caught:  # lone surrogates: what bytes decoded with surrogateescape give
        load_site_text(HEAD + "x: \udcff\udcfe\n", "site.yaml")
    assert caught.value.lines == ["site.yaml:2:4: not UTF-8 text"]
