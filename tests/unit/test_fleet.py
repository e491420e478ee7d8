"""The roll-out's rules that need no running gateway: chunks, what may be applied remotely, the
operators' signatures for a broadcast change, and the rollback a start does after a crash in the window."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.fleet import sign_config
from gateway.alerts.signing import public_key_text
from gateway.commands.target import CommandFailed
from gateway.config.loader import load_site_text
from gateway.fleet import staging
from gateway.fleet.rollout import RolloutManager
from gateway.fleet.store import RolloutStore, sha256_hex

ALICE, BOB, MALLORY = (Ed25519PrivateKey.generate() for _ in range(3))


def site(tmp: Path, *, gw: str = "gw1", name: str = "v1", zone: str = "dam", state: str = "state") -> str:
    clips = ", ".join(f"{n}: {{file: {tmp / (n + '.wav')}}}" for n in ("exercise", "test", "all_clear"))
    return f"""
gateway: {{id: {gw}, name: {name}, state_dir: {tmp / state}}}
buses:
  - type: modbus_tcp
    name: board
    host: 127.0.0.1
    port: 1502
    devices: [{{name: relays, unit_id: 1, points: [{{id: relay.x, table: coil, address: 9, type: bool}}]}}]
broadcast:
  sender: {gw}
  audit_path: {tmp / 'audit.log'}
  operators: {{alice: "{public_key_text(ALICE)}", bob: "{public_key_text(BOB)}"}}
  outputs:
    siren: {{type: modbus_relay_siren, board: {{transport: tcp, host: 127.0.0.1, port: 1502}}, coil: 0}}
  zones: {{{zone}: {{outputs: [siren]}}}}
  patterns: {{flood: {{steps: [[2, 1]], repeat: 10}}, drill: {{steps: [[1, 2]], repeat: 5}}}}
  status_patterns: {{actual: flood, exercise: drill}}
  clips: {{{clips}}}
  announce: {{exercise: exercise, test: test}}
  all_clear_clip: all_clear
"""


def test_chunks_resume_and_a_wrong_digest_is_refused(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    body = b"gateway: {id: x}\n" * 100
    sha = sha256_hex(body)
    parts = [body[:700], body[700:]]
    progress = staging.receive_chunk(store, sha, 1, 2, base64.b64encode(parts[1]).decode())
    assert (progress.received, progress.complete) == (1, False)
    progress = staging.receive_chunk(store, sha, 1, 2, base64.b64encode(parts[1]).decode())  # sent again
    assert progress.received == 1
    progress = staging.receive_chunk(store, sha, 0, 2, base64.b64encode(parts[0]).decode())
    assert progress.complete and staging.assemble(store, progress) == body
    assert store.staged_path.read_bytes() == body
    wrong = staging.receive_chunk(store, "0" * 64, 0, 1, base64.b64encode(b"other").decode())
    with pytest.raises(CommandFailed, match="sha256"):
        staging.assemble(store, wrong)
    with pytest.raises(CommandFailed, match="index"):
        staging.receive_chunk(store, sha, 2, 2, "")


def test_invalid_file_is_refused_with_its_line(tmp_path: Path) -> None:
    config, problems = staging.validate(b"gateway: {id: gw1}\nbuses: 7\n", str(tmp_path / "site.yaml"))
    assert config is None and "site.yaml (staged):2:" in problems[0]


def test_a_broadcast_change_needs_two_operators(tmp_path: Path) -> None:
    running = load_site_text(site(tmp_path))
    body = site(tmp_path, zone="village").encode()
    new = load_site_text(body.decode())
    sha = sha256_hex(body)
    assert staging.changes_broadcast(running, new)
    assert "2 distinct operator signature(s) required, 0 valid" in str(staging.refusal(running, new, sha, []))
    one = [sign_config(ALICE, "alice", "gw1", body)]
    assert "1 valid" in str(staging.refusal(running, new, sha, one))
    twice = [*one, sign_config(ALICE, "alice", "gw1", body)]
    assert "1 valid" in str(staging.refusal(running, new, sha, twice))
    stranger = [*one, sign_config(MALLORY, "bob", "gw1", body)]
    assert "1 valid" in str(staging.refusal(running, new, sha, stranger))
    other_gateway = [*one, sign_config(BOB, "bob", "gw2", body)]
    assert "1 valid" in str(staging.refusal(running, new, sha, other_gateway))
    stale = [*one, sign_config(BOB, "bob", "gw1", body, now=time.time() - 3600)]
    assert "older than" in str(staging.refusal(running, new, sha, stale))
    assert staging.refusal(running, new, sha, [*one, sign_config(BOB, "bob", "gw1", body)]) is None
    # A change elsewhere needs no operator.
    plain = load_site_text(site(tmp_path, name="v2"))
    assert not staging.changes_broadcast(running, plain)
    assert staging.refusal(running, plain, "x", []) is None


def test_identity_and_state_dir_cannot_change_remotely(tmp_path: Path) -> None:
    running = load_site_text(site(tmp_path))
    assert "for gateway 'gw2'" in str(staging.refusal(running, load_site_text(site(tmp_path, gw="gw2")), "x", []))
    moved = load_site_text(site(tmp_path, state="elsewhere"))
    assert "state_dir" in str(staging.refusal(running, moved, "x", []))


def test_a_start_inside_the_window_rolls_back(tmp_path: Path) -> None:
    config_path = tmp_path / "site.yaml"
    old, new = site(tmp_path).encode(), site(tmp_path, name="v2").encode()
    config_path.write_bytes(new)  # the new file was in place when the daemon died
    store = RolloutStore(tmp_path / "state")
    store.write_file(store.previous_path, old)
    manager = RolloutManager(str(config_path), load_site_text(new.decode()))
    manager.state.phase, manager.state.sha256 = "trial", sha256_hex(new)
    store.save(manager.state)
    restarted = RolloutManager(str(config_path), load_site_text(new.decode()))
    config = restarted.recover(load_site_text(new.decode()))
    assert config.gateway.name == "v1" and config_path.read_bytes() == old
    assert store.load().phase == "rolled_back" and "health window" in store.load().reason
    # A committed roll-out is left alone.
    again = RolloutManager(str(config_path), config)
    assert again.recover(config) is config and config_path.read_bytes() == old


def test_hardware_from_the_device_tree_or_dmi(tmp_path: Path) -> None:
    from gateway.fleet.inventory import hardware

    tree, dmi = tmp_path / "dt", tmp_path / "dmi"
    tree.mkdir()
    dmi.mkdir()
    (tree / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    (tree / "serial-number").write_bytes(b"10000000abcdef01\0")
    assert hardware.__wrapped__(tree, dmi)["model"] == "Raspberry Pi 4 Model B Rev 1.5"
    assert hardware.__wrapped__(tree, dmi)["serial"] == "10000000abcdef01"
    (dmi / "sys_vendor").write_text("Advantech\n")
    (dmi / "product_name").write_text("UNO-2271G\n")
    x86 = hardware.__wrapped__(tmp_path / "none", dmi)
    assert x86["model"] == "Advantech UNO-2271G" and x86["serial"] is None  # product_serial: root only


def test_health_message_carries_the_compact_inventory(tmp_path: Path) -> None:
    from gateway.fleet.inventory import inventory
    from gateway.health import health_message

    inv = inventory("ab" * 32, "2026-12", [{"link": "bd", "type": "beidou", "card_id": 1234}],
                    {"phase": "rolled_back", "sha256": "cd" * 32, "reason": "link county not connected"})
    message = health_message({"inventory": inv}, tmp_path, thermal_dir=tmp_path)
    assert message["inventory"]["cfg"] == "ab" * 8 and message["inventory"]["label"] == "2026-12"
    assert message["inventory"]["modems"] == [{"link": "bd", "type": "beidou", "card_id": 1234}]
    assert message["inventory"]["rollout"] == {"phase": "rolled_back", "cfg": "cd" * 8,
                                               "reason": "link county not connected"}
    assert "inventory" not in health_message({}, tmp_path, thermal_dir=tmp_path)


def test_a_full_config_chunk_passes_the_envelope_check() -> None:
    """A full chunk of centre.fleet passes the envelope's limits and the MQTT link's message limit; before,
    32 KiB chunks were over all three (8 KiB args, 16 KiB envelope, 32 KiB message): a site file larger
    than about 6 KiB could not be rolled out."""
    from centre.fleet import CHUNK_BYTES, chunk_commands
    from gateway.commands.envelope import check_fields, parse_json

    body = b"# padding\n" * (CHUNK_BYTES // 10 + 1)
    envelope = chunk_commands(ALICE, "ops", "gw1", body)[0]
    from drivers.mqtt.inbound import MAX_MESSAGE_BYTES

    assert len(envelope.args["data"]) > 30_000
    check_fields(parse_json(envelope.to_bytes()))
    assert len(envelope.to_bytes()) < MAX_MESSAGE_BYTES - 512  # a ThingsBoard RPC wraps it in a few hundred bytes
