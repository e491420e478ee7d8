"""The centre bridge without its ports: config (file:line:column), decoding per card, dedup, ACK after PUBACK."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from centre.satellite import bridge as bridge_module
from centre.satellite.bridge import Bridge
from centre.satellite.config import Centre, load_centre
from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import Reply
from gateway.config import ConfigError
from gateway.shared import Quality, Reading
from tests.unit.cli import fieldgate

KEY = bytes(range(32))
CARD, NUMBER, GW = 166166, 1001, "res-qingshui-01"
ALIASES = compact.AliasTable({1: "dam.level", 2: "rain.total"})
NOW = 1_800_000_000


def write_config(tmp: Path, gateways: str | None = None, extra: str = "") -> Path:
    (tmp / "gw.key").write_text(base64.b64encode(KEY).decode() + "\n")
    gateways = gateways or f"""
  - card: {CARD}
    ack_key_file: gw.key
    gateway_id: {GW}
    gateway_number: {NUMBER}
    aliases: {{1: dam.level, 2: rain.total}}
    rule_aliases: {{level.danger: 2}}
    units: {{dam.level: m, rain.total: mm}}"""
    path = tmp / "centre.yaml"
    path.write_text(textwrap.dedent(f"""\
receiver: {{port: /dev/ttyUSB9}}
broker: {{host: 127.0.0.1}}
{extra}gateways:{gateways}
state_file: state/centre.db
"""))
    return path


@pytest.fixture
def centre(tmp_path: Path) -> Centre:
    return load_centre(write_config(tmp_path))


def alarm(seq: int, value: float = 152.5) -> bytes:
    return compact.encode_alarm(compact.CompactAlarm(seq=seq, time=NOW, point="dam.level", rule=2, level=3,
                                                     value=value, text="水位超过危险水位"), gateway=NUMBER,
                                aliases=ALIASES)


def body(bridge: Bridge) -> dict[str, Any]:
    publication = bridge.next_publication()
    assert publication is not None
    loaded: dict[str, Any] = json.loads(publication.payload)
    return loaded


def test_an_alarm_is_published_as_the_gateway_would_then_acked_after_the_puback(centre: Centre) -> None:
    bridge = Bridge(centre, clock=lambda: NOW + 5)
    bridge.on_incoming(CARD, alarm(41))
    publication = bridge.next_publication()
    assert publication is not None and publication.topic == f"fieldgate/v1/{GW}/alarm" and publication.seqs == (41,)
    assert body(bridge) == {"v": 1, "gw": GW, "records": [{
        "kind": "alarm", "key": "level.danger", "ts": float(NOW), "transition": "raised", "rule": "level.danger",
        "severity": "severe", "points": {"dam.level": {"value": 152.5, "q": "good", "ts": float(NOW)}},
        "message": "水位超过危险水位", "seq": 41, "via": "beidou"}]}
    assert bridge.next_send(77) is None  # nothing is ACKed before the broker has it
    bridge.on_incoming(CARD, alarm(41))  # the gateway resent it meanwhile: not queued twice
    assert bridge.unpublished == 1 and bridge.counters["duplicates"] == 1
    bridge.published(publication)
    send = bridge.next_send(77)
    assert send is not None and send.card == CARD and send.acked == {41}
    ack = compact.decode(send.payload)
    assert ack.kind is compact.MessageKind.ACK and ack.acked == ((41, 41),) and compact.ack_authentic(ack, KEY)
    bridge.sent(send)
    assert bridge.next_send(77) is None
    bridge.on_incoming(CARD, alarm(41))  # the ACK was lost: ACKed again, not published again
    assert bridge.next_publication() is None
    again = bridge.next_send(77)
    assert again is not None and again.acked == {41}


def test_readings_keep_only_the_unpublished_and_carry_units(centre: Centre) -> None:
    bridge = Bridge(centre, clock=lambda: NOW + 100)
    readings = [Reading("dam.level", 23.417, Quality.GOOD, NOW, seq=10),
                Reading("rain.total", None, Quality.COMM_FAIL, NOW + 1, seq=11)]
    bridge.on_incoming(CARD, compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES))
    first = bridge.next_publication()
    assert first is not None and first.topic.endswith("/telemetry") and first.seqs == (10, 11)
    records = body(bridge)["records"]
    assert records[0] == {"point": "dam.level", "value": 23.417, "unit": "m", "q": "good", "ts": float(NOW),
                          "seq": 10, "hist": True, "via": "beidou"}
    assert records[1]["value"] is None and records[1]["q"] == "comm_fail" and records[1]["unit"] == "mm"
    bridge.published(first)
    more = [*readings, Reading("dam.level", 23.42, Quality.GOOD, NOW + 2, seq=12)]
    bridge.on_incoming(CARD, compact.encode_readings(more, gateway=NUMBER, aliases=ALIASES))
    second = bridge.next_publication()
    assert second is not None and second.seqs == (12,)


def test_unknown_cards_foreign_numbers_and_junk_are_dropped_and_counted(centre: Centre) -> None:
    bridge = Bridge(centre)
    bridge.on_incoming(999, alarm(1))
    bridge.on_incoming(CARD, b"\x00junk")
    bridge.on_incoming(CARD, compact.encode_alarm(compact.CompactAlarm(seq=1, time=NOW, point="dam.level", rule=0,
                                                                       level=1, value=1.0), gateway=7, aliases=ALIASES))
    bridge.on_incoming(CARD, compact.encode_ack([(1, 1)], gateway=NUMBER, time=NOW, key=KEY))
    assert bridge.next_publication() is None
    assert {k: bridge.counters[k] for k in ("unknown_card", "undecodable", "wrong_gateway", "ignored")} == \
        {"unknown_card": 1, "undecodable": 1, "wrong_gateway": 1, "ignored": 1}


def test_the_queue_for_a_broker_that_is_down_is_bounded(tmp_path: Path) -> None:
    bridge = Bridge(load_centre(write_config(tmp_path, extra="max_queued: 10\n")))
    for seq in range(1, 16):
        bridge.on_incoming(CARD, alarm(seq))
    assert bridge.unpublished == 10 and bridge.counters["dropped_unpublished"] == 5
    first = bridge.next_publication()
    assert first is not None and first.seqs == (6,)
    bridge.on_incoming(CARD, alarm(1))  # dropped unACKed, so its resend is taken
    assert bridge.unpublished == 10


def test_many_owed_seqs_ack_in_one_message_that_fits(centre: Centre) -> None:
    bridge = Bridge(centre)
    for seq in range(1, 200, 3):  # 67 separate seqs: more ranges than 77 bytes hold
        bridge.on_incoming(CARD, alarm(seq))
        publication = bridge.next_publication()
        assert publication is not None
        bridge.published(publication)
    send = bridge.next_send(77)
    assert send is not None and len(send.payload) <= 77 and 10 < len(send.acked) < 67
    bridge.sent(send)
    rest = bridge.next_send(77)
    assert rest is not None and not rest.acked & send.acked


def test_a_reply_goes_to_the_reply_topic_in_full(centre: Centre) -> None:
    bridge = Bridge(centre)
    reply = Reply(gw=GW, id=77, kid=None, cmd="ping", status=Status.REJECTED, reason=Reason.REPLAYED, detail="",
                  result=None, ts=NOW, via="beidou")
    bridge.on_incoming(CARD, compact.encode_reply(reply.compact_body(60), gateway=NUMBER, time=NOW, command_id=77,
                                                  issuer=3))
    publication = bridge.next_publication()
    assert publication is not None and publication.topic == f"fieldgate/v1/{GW}/reply" and publication.seqs == ()
    assert body(bridge) == {"v": 1, "gw": GW, "id": 77, "kid": None, "cmd": None, "status": "rejected",
                            "ts": float(NOW), "via": "beidou", "issuer": 3, "reason": "replayed", "detail": ""}


def test_commands_for_a_gateway_wait_for_its_turn(centre: Centre) -> None:
    bridge = Bridge(centre)
    command = compact.encode_command(b"\x01\x03envelope", gateway=NUMBER, time=NOW, command_id=5)
    assert "not a COMMAND" in bridge.queue_command(GW, compact.encode_command(b"x", gateway=9, time=NOW,
                                                                              command_id=5), 77)
    assert "no gateway" in bridge.queue_command("elsewhere", command, 77)
    assert bridge.queue_command(GW, command, 77) == ""
    send = bridge.next_send(77)
    assert send is not None and send.command and send.payload == command and send.card == CARD
    bridge.sent(send)
    assert bridge.next_send(77) is None


def test_config_errors_have_file_line_and_column(tmp_path: Path) -> None:
    entries = [f"  - {{card: {CARD}, ack_key_file: gw.key, gateway_id: a, gateway_number: 1}}",  # line 4
               f"  - {{card: {CARD}, ack_key_file: gw.key, gateway_id: b, gateway_number: 2}}",
               "  - {card: 5, ack_key_file: missing.key, gateway_id: c, gateway_number: 3}",
               "  - {card: 6, ack_key_file: gw.key, gateway_id: d}"]

    def problems(*chosen: int) -> tuple[Path, list[str]]:
        path = write_config(tmp_path, "".join("\n" + entries[i] for i in chosen))
        with pytest.raises(ConfigError) as caught:
            load_centre(path)
        return path, caught.value.lines

    path, lines = problems(0, 3)
    assert any(line.startswith(f"{path}:5:") and "gateway_number" in line for line in lines), lines
    path, lines = problems(0, 1)
    assert any(line.startswith(f"{path}:5:") and "card 166166 is also gateways[0]" in line for line in lines), lines
    path, lines = problems(0, 2)
    assert any(line.startswith(f"{path}:5:") and "ack_key_file" in line and "missing.key" in line
               for line in lines), lines


def test_a_gateways_own_site_file_gives_its_aliases_units_and_prefix(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    site = root / "config" / "reservoir.yaml"
    path = write_config(tmp_path, f"\n  - {{card: {CARD}, ack_key_file: gw.key, site: {site}}}")
    gateway = load_centre(path).gateways[CARD]
    assert (gateway.gateway_id, gateway.number) == ("res-qingshui-01", 1001)
    assert gateway.aliases.point(1) == "dam.level" and gateway.units["dam.level"] == "m"
    assert gateway.rules_by_alias[2] == "level.danger" and gateway.base == "fieldgate/v1/res-qingshui-01"
    ran = fieldgate("sat-centre", str(path), "--check")
    assert ran.returncode == 0 and "166166 -> res-qingshui-01 (1001)" in ran.stdout, ran.stderr


def test_what_the_bridge_publishes_validates_against_the_payload_schema(centre: Centre) -> None:
    from tests.unit.test_profiles_fieldgate import SCHEMA, validate

    bridge = Bridge(centre, clock=lambda: NOW)
    readings = [Reading("dam.level", 23.417, Quality.GOOD, NOW, seq=10),
                Reading("rain.total", None, Quality.COMM_FAIL, NOW + 1, seq=11)]
    bridge.on_incoming(CARD, compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES))
    bridge.on_incoming(CARD, alarm(12))
    while (publication := bridge.next_publication()) is not None:
        validate(json.loads(publication.payload), SCHEMA)
        bridge.published(publication)


# ---- the bridge's state across a restart (centre/satellite/store.py) ---------------------------------------
# Each of these failed before the state was kept in a file: the bridge restarted with empty memory.


def restart(centre: Centre, now: float) -> Bridge:
    return Bridge(centre, clock=lambda: now)


def test_a_restart_between_the_puback_and_the_ack_still_acks(centre: Centre) -> None:
    bridge = restart(centre, NOW + 5)
    bridge.on_incoming(CARD, alarm(41))
    publication = bridge.next_publication()
    assert publication is not None
    bridge.published(publication)
    bridge.store.close()
    after = restart(centre, NOW + 60)
    send = after.next_send(77)
    assert send is not None and send.acked == {41} and compact.ack_authentic(compact.decode(send.payload), KEY)
    after.sent(send)
    after.store.close()  # its writer has the change; close() writes what is queued
    assert restart(centre, NOW + 120).next_send(77) is None  # the ACK sent is not owed again


def test_a_copy_resent_after_a_restart_is_acked_not_published_again(centre: Centre) -> None:
    """The gateway resends after ``ack_timeout``; the bridge restarted meanwhile. Decoded again an hour later the
    readings would read ``"hist": true``: published twice with different content, which the platform's
    (gw, seq) dedup would keep or drop at random."""
    readings = [Reading("dam.level", 23.417, Quality.GOOD, NOW, seq=10)]
    message = compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES)
    bridge = restart(centre, NOW + 5)
    bridge.on_incoming(CARD, message)
    publication = bridge.next_publication()
    assert publication is not None and "hist" not in body(bridge)["records"][0]
    bridge.published(publication)
    send = bridge.next_send(77)
    assert send is not None
    bridge.sent(send)  # ... and the ACK is lost on the way
    bridge.store.close()
    after = restart(centre, NOW + 3600)
    after.on_incoming(CARD, message)
    assert after.next_publication() is None and after.counters["duplicates"] == 1
    again = after.next_send(77)
    assert again is not None and again.acked == {10}


def test_a_restart_before_the_puback_publishes_the_same_bytes(centre: Centre) -> None:
    readings = [Reading("dam.level", 23.417, Quality.GOOD, NOW, seq=10)]
    bridge = restart(centre, NOW + 5)
    bridge.on_incoming(CARD, compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES))
    first = bridge.next_publication()
    assert first is not None
    bridge.store.close()
    after = restart(centre, NOW + 3600)
    again = after.next_publication()
    assert again == first and after.unpublished == 1
    after.on_incoming(CARD, compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES))
    assert after.unpublished == 1  # its resend is not queued a second time


def test_a_queued_command_survives_a_restart_and_is_sent_once(centre: Centre) -> None:
    command = compact.encode_command(b"\x01\x03envelope", gateway=NUMBER, time=NOW, command_id=5)
    bridge = restart(centre, NOW)
    assert bridge.queue_command(GW, command, 77) == ""
    bridge.store.close()
    after = restart(centre, NOW + 30)
    send = after.next_send(77)
    assert send is not None and send.command and send.payload == command
    after.sent(send)
    after.store.close()
    assert restart(centre, NOW + 60).next_send(77) is None


def test_the_state_file_stays_bounded_and_forgets_gateways_no_longer_configured(tmp_path: Path) -> None:
    centre = load_centre(write_config(tmp_path, extra="dedup_per_gateway: 64\n"))
    bridge = restart(centre, NOW)
    for seq in range(1, 101):
        bridge.on_incoming(CARD, alarm(seq))
        publication = bridge.next_publication()
        assert publication is not None
        bridge.published(publication)
    for n in range(12):
        bridge.queue_command(GW, compact.encode_command(b"\x01\x03e", gateway=NUMBER, time=NOW, command_id=n), 77)
    bridge.store.close()
    saved = restart(centre, NOW).store.gateways()[NUMBER]
    assert saved.seen == list(range(37, 101)) and len(saved.commands) == 8
    other = """
  - {card: 5, ack_key_file: gw.key, gateway_id: other, gateway_number: 7}"""
    assert restart(load_centre(write_config(tmp_path, other)), NOW).store.gateways() == {}


def test_a_damaged_state_file_is_moved_aside_and_a_new_one_begun(tmp_path: Path) -> None:
    centre = load_centre(write_config(tmp_path))
    centre.state_path.parent.mkdir(parents=True)
    centre.state_path.write_bytes(b"not a database" * 100)
    bridge = restart(centre, NOW)
    bridge.on_incoming(CARD, alarm(3))
    assert bridge.unpublished == 1
    assert [p.name.startswith("centre.db.corrupt-") for p in centre.state_path.parent.iterdir()].count(True) == 1


def test_readings_from_a_gateway_not_yet_updated_version_1_publish_the_same(tmp_path: Path) -> None:
    """Gateways update slowly: the centre reads READINGS version 1 and 2 alike."""
    readings = [Reading("dam.level", 23.417, Quality.GOOD, NOW, seq=10),
                Reading("rain.total", 3505.5, Quality.UNCERTAIN, NOW + 10, seq=11)]
    published = []
    for version in (1, 2):
        (tmp_path / str(version)).mkdir()
        bridge = Bridge(load_centre(write_config(tmp_path / str(version))), clock=lambda: NOW + 20)
        bridge.on_incoming(CARD, compact.encode_readings(readings, gateway=NUMBER, aliases=ALIASES, version=version))
        published.append(bridge.next_publication())
    assert published[0] is not None and published[0] == published[1]


def test_the_broker_takes_the_gateways_tls_settings_with_files_relative_to_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        "broker: {host: 127.0.0.1}",
        "broker: {host: b.example, port: 8883, tls: {ca_file: pki/ca.pem, cert_credential: centre.pem, "
        "key_credential: centre.key}}"))
    tls = load_centre(path).config.broker.tls
    assert tls is not None and tls.ca_file == tmp_path / "pki" / "ca.pem" and tls.cert_credential == "centre.pem"
    assert tls.check_hostname and tls.min_version == "1.2"


def test_a_slow_disk_does_not_hold_the_event_loop_and_saved_waits_for_it(centre: Centre) -> None:
    """Each write statement waits on a gate (a disk that takes its time to fsync): the bridge's calls on the
    loop return at once; ``saved()``, which the service awaits before telling the broker or a card, waits
    for the disk. Before the writer thread, on_incoming itself held the loop until the gate gave up."""
    gate = threading.Event()
    held_on: list[str] = []  # the threads a write held while the disk was slow

    def slow_disk(statement: str) -> None:
        if statement.split(" ", 1)[0] in ("INSERT", "DELETE", "COMMIT") and not gate.is_set():
            held_on.append(threading.current_thread().name)
            gate.wait(2.0)

    async def body() -> None:
        bridge = restart(centre, NOW + 5)
        bridge.store._db.set_trace_callback(slow_disk)  # the writer seam: every statement passes here
        bridge.on_incoming(CARD, alarm(41))
        assert threading.main_thread().name not in held_on  # the loop did not wait for the disk
        assert bridge.next_publication() is not None  # memory has it at once
        saving = asyncio.create_task(bridge.store.saved())
        await asyncio.sleep(0.05)
        assert not saving.done()  # ... the disk not yet: the publisher waits
        gate.set()
        async with asyncio.timeout(10):
            await saving
        assert held_on == ["satcentre-state"]
        bridge.store.close()

    asyncio.run(body())
    assert restart(centre, NOW + 60).unpublished == 1  # saved: read back after a restart


def test_a_burst_of_changes_is_written_as_one_transaction(centre: Centre) -> None:
    """Group commit: what queued while the disk was busy goes out with one COMMIT (one fsync)."""
    gate, commits = threading.Event(), []

    def count_commits(statement: str) -> None:
        if statement.startswith("COMMIT"):
            commits.append(statement)
            gate.wait(2.0)  # the first commit takes long: the rest of the burst queues behind it

    bridge = restart(centre, NOW + 5)
    bridge.store._db.set_trace_callback(count_commits)
    for seq in range(1, 51):
        bridge.on_incoming(CARD, alarm(seq))
    gate.set()
    bridge.store.close()
    assert 1 <= len(commits) <= 2  # the first change alone, maybe, then the other 49 together
    assert restart(centre, NOW + 60).unpublished == 50


def test_a_disk_that_hangs_bounds_what_waits_for_it(centre: Centre, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs wait for the disk (saved()); inputs must not pile up behind a hung one: beyond the bound a
    message is dropped unACKed (its gateway sends it again) and a platform command refused."""
    monkeypatch.setattr(bridge_module, "STATE_BACKLOG_MAX", 5)
    gate = threading.Event()
    bridge = restart(centre, NOW + 5)
    bridge.store._db.set_trace_callback(lambda statement: statement.startswith("INSERT") and gate.wait(10.0))
    for seq in range(1, 11):
        bridge.on_incoming(CARD, alarm(seq))
    assert bridge.unpublished == 5 and bridge.counters["disk_behind"] == 5 and bridge.store.backlog == 5
    command = compact.encode_command(b"\x01\x03envelope", gateway=NUMBER, time=NOW, command_id=5)
    assert "changes behind" in bridge.queue_command(GW, command, 77)
    gate.set()
    bridge.store.close()
    assert restart(centre, NOW + 60).unpublished == 5
