"""The satellite ACK key: where the config says it lives, what a bad one does, and the platform-side tool
(`fieldgate ack keygen | make`, `fieldgate decode --ack-key-file`)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from gateway import compact
from gateway.ackkey import AckKeyError, ack_key_for_daemon, load_ack_key, parse_ranges
from gateway.config import ConfigError, load_site_text
from gateway.config.site import SatelliteSection
from tests.unit.cli import fieldgate

KEY = bytes(range(32))

SITE = """\
gateway: {id: gw-1, state_dir: /tmp/x}
buses:
  - type: modbus_tcp
    name: gauges
    host: 127.0.0.1
    devices:
      - {name: level, points: [{id: level, address: 0}]}
satellite:
  gateway_number: 42
  aliases: {1: level}
"""


def key_file(tmp: Path, content: bytes = base64.b64encode(KEY) + b"\n", name: str = "ack.key") -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def test_a_satellite_link_waiting_for_acks_needs_the_key_source() -> None:
    with pytest.raises(ConfigError) as caught:
        load_site_text(SITE + "links:\n  - {type: beidou, name: bd, port: /dev/null, dest: 12}\n", "site.yaml")
    assert caught.value.lines == [
        "site.yaml:12:5: links[0]: policy.app_ack (on by default) needs satellite.ack_key_file or "
        "satellite.ack_key_credential: the key the platform's ACKs are checked with (docs/satellite.md §1.4)"]
    # without app_ack no ACK is waited for; with a key source the link may wait for them
    load_site_text(SITE + "links:\n  - {type: iridium_sbd, port: /dev/null, policy: {app_ack: false}}\n")
    config = load_site_text(SITE.replace("satellite:\n", "satellite:\n  ack_key_credential: satellite-ack.key\n")
                            + "links:\n  - {type: beidou, name: bd, port: /dev/null, dest: 12}\n")
    assert config.satellite.ack_key_credential == "satellite-ack.key"


def test_one_key_source_and_a_credential_is_a_name_not_a_path() -> None:
    both = SITE.replace("satellite:\n", "satellite:\n  ack_key_file: k\n  ack_key_credential: k\n")
    with pytest.raises(ConfigError, match="either ack_key_file or ack_key_credential"):
        load_site_text(both)
    with pytest.raises(ConfigError, match="ack_key_credential"):
        load_site_text(SITE.replace("satellite:\n", "satellite:\n  ack_key_credential: ../etc/key\n"))


def test_key_from_a_file_relative_to_the_config_or_a_systemd_credential(tmp_path: Path) -> None:
    key_file(tmp_path)
    assert load_ack_key(Path("ack.key"), None, tmp_path) == KEY
    assert load_ack_key(None, "ack.key", None, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == KEY
    assert load_ack_key(None, None, tmp_path) is None


@pytest.mark.parametrize(("content", "error"), [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"not base64 !\n", "is not base64 text"),
    (base64.b64encode(bytes(8)), "holds 8 bytes; an ACK key is 16..64"),
])
def test_a_bad_key_is_one_clear_error(tmp_path: Path, content: bytes | None, error: str) -> None:
    path = tmp_path / "ack.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AckKeyError, match=error):
        load_ack_key(path, None)


def test_credential_without_systemd_is_one_clear_error() -> None:
    with pytest.raises(AckKeyError, match=r"CREDENTIALS_DIRECTORY is not set"):
        load_ack_key(None, "satellite-ack.key", None, {})


def test_the_daemon_logs_a_broken_key_once_and_runs_without_it(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    section = SatelliteSection(ack_key_file=tmp_path / "missing.key")
    assert ack_key_for_daemon(section, tmp_path) is None
    assert len(caplog.records) == 1
    assert "platform ACKs will be refused" in caplog.text and "missing.key does not exist" in caplog.text


def test_parse_ranges() -> None:
    assert parse_ranges("20-25,17, 18,24-30") == [(17, 18), (20, 30)]
    with pytest.raises(ValueError):
        parse_ranges("9-3")


def test_keygen_make_and_decode(tmp_path: Path) -> None:
    key = tmp_path / "gw42.key"
    made = fieldgate("ack", "keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    assert key.stat().st_mode & 0o777 == 0o600 and len(load_ack_key(key, None) or b"") == 32
    assert fieldgate("ack", "keygen", "--out", str(key)).returncode == 1  # never overwritten
    ack = fieldgate("ack", "make", "--ack-key-file", str(key), "--gateway-number", "42", "--seqs", "17,20-25",
                    "--time", "1800000000")
    assert ack.returncode == 0, ack.stderr
    message = compact.decode(bytes.fromhex(ack.stdout.strip()))
    assert (message.gateway, message.base_time, message.acked) == (42, 1_800_000_000, ((17, 17), (20, 25)))
    decoded = fieldgate("decode", ack.stdout.strip(), "--ack-key-file", str(key))
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["mac"] == "valid"
    other = key_file(tmp_path, base64.b64encode(bytes(32)), "other.key")
    decoded = fieldgate("decode", ack.stdout.strip(), "--ack-key-file", str(other))
    assert json.loads(decoded.stdout)["mac"].startswith("INVALID")
    assert json.loads(fieldgate("decode", ack.stdout.strip()).stdout)["mac"].startswith("not checked")
    broken = fieldgate("decode", ack.stdout.strip(), "--ack-key-file", str(tmp_path / "none"))
    assert broken.returncode == 2 and "does not exist" in broken.stderr and "Traceback" not in broken.stderr


def test_make_refuses_what_it_cannot_make(tmp_path: Path) -> None:
    key = key_file(tmp_path)
    bad = fieldgate("ack", "make", "--ack-key-file", str(key), "--gateway-number", str(2**32), "--seqs", "1")
    assert bad.returncode == 1 and "out of range" in bad.stderr and "Traceback" not in bad.stderr
    short = key_file(tmp_path, base64.b64encode(bytes(4)), "short.key")
    refused = fieldgate("ack", "make", "--ack-key-file", str(short), "--gateway-number", "1", "--seqs", "1")
    assert refused.returncode == 1 and "holds 4 bytes" in refused.stderr


def test_validate_warns_when_the_key_cannot_be_read_here(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace("satellite:\n", "satellite:\n  ack_key_file: keys/ack.key\n")
                    + "links:\n  - {type: beidou, name: bd, port: /dev/null, dest: 12}\n")
    run = fieldgate("validate", str(site))
    assert run.returncode == 0, run.stderr  # a warning: the box may hold what the laptop lacks
    assert f"{site}: warning: satellite ACK key file {tmp_path / 'keys' / 'ack.key'} does not exist" in run.stdout
    (tmp_path / "keys").mkdir()
    key_file(tmp_path / "keys")
    assert "warning" not in fieldgate("validate", str(site)).stdout
