"""The satellite path end to end: a gateway whose MQTT uplink is down raises an alarm; it leaves by its
BeiDou module (emulator), reaches the centre's command receiver (a second emulator) through the emulated
constellation, `fieldgate sat-centre` publishes it to the centre's mosquitto with the seq the gateway gave it
and sends the authenticated ACK back the same way; the gateway releases it. Then the uplink returns and the
gateway's own MQTT copy arrives: the same seq, the same content (but for ``via`` and whole-second ``ts``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.beidou.sentences import Dialect
from drivers.modbus.config import PointConfig
from gateway import compact
from gateway.config import load_site
from sim.beidou import BeidouEmulator, Constellation
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.pki import make_pki
from sim.platform import Platform
from sim.serial_pty import socat_pair
from sim.sites import GATEWAY_NUMBER, PLATFORM_CARD, ack_key_file, failover_site
from sim.support import free_port, listening, wait_for
from tests.hil.rig import ROOT, RigFile

pytestmark = [pytest.mark.hil, pytest.mark.timeout(180)]
GATEWAY_CARD, CENTRE_CARD = 166166, PLATFORM_CARD  # the failover site's gateway sends to the platform's card


def centre_config(tmp: Path, receiver_port: str, broker_port: int, site: Path, key_file: Path, dialect: str) -> Path:
    path = tmp / "centre.yaml"
    path.write_text(f"""
receiver: {{port: {receiver_port}, dialect: "{dialect}", probe_timeout: 500ms}}
broker: {{host: 127.0.0.1, port: {broker_port}, reconnect: 500ms}}
state_file: {tmp / "satcentre.db"}
gateways:
  - {{card: {GATEWAY_CARD}, site: {site}, ack_key_file: {key_file}}}
""")
    return path


class Process:
    """A child process of this test in its own process group (socat forks one child per connection)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        handle = open(log, "ab")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=handle, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def by_seq(records: list[dict[str, Any]], seq: int, via: str | None) -> list[dict[str, Any]]:
    return [r for r in records if r.get("seq") == seq and r.get("via") == via]


def same_content(satellite: dict[str, Any], mqtt: dict[str, Any]) -> None:
    """Every field the satellite copy has is the MQTT copy's, but ``via``, and times (``ts``, here and in the
    alarm's points) that the compact form carries in whole seconds."""
    for key, value in satellite.items():
        if key == "via":
            continue
        if key == "ts":
            assert int(mqtt["ts"]) == value, (satellite, mqtt)
        elif isinstance(value, dict) and isinstance(mqtt.get(key), dict):
            same_content(value, mqtt[key])
        else:
            assert mqtt.get(key) == value, (key, satellite, mqtt)


@dataclass
class Rig:
    tmp: Path
    module: BeidouEmulator  # the gateway's
    receiver: BeidouEmulator  # the centre's command receiver
    site: Path
    gauge: SimUnit
    level: PointConfig
    gateway: GatewayProcess
    centre: Process

    def logs(self) -> str:
        return f"\ngateway:\n{self.gateway.log()}\ncentre:\n{self.centre.log()}"


@contextlib.contextmanager
def satellite_rig(tmp_path: Path, broker: Broker, centre_dialect: Dialect, uplink_port: int,
                  site_extra: str = "") -> Iterator[Rig]:
    """The gateway (MQTT towards ``uplink_port``, where nothing listens yet) with its BeiDou module, the centre's
    command receiver in ``centre_dialect`` joined to it through the emulated constellation, `fieldgate sat-centre`
    on the receiver and ``broker``; a gauge at 149 m (below the danger rule)."""
    gauge_port = free_port()
    key_file, _key = ack_key_file(tmp_path)
    sky = Constellation(delay_s=0.3)
    with socat_pair() as (gateway_end, module_end), socat_pair() as (centre_end, receiver_end), \
            BeidouEmulator(module_end, card_id=GATEWAY_CARD, interval_s=3, noise_period_s=0.5) as module, \
            BeidouEmulator(receiver_end, dialect=centre_dialect, card_id=CENTRE_CARD, interval_s=1,
                           noise_period_s=0.5, subordinates=frozenset({GATEWAY_CARD})) as receiver:
        sky.join(module, receiver)
        site = failover_site(tmp_path, gauge_port, uplink_port, gateway_end, key_file)  # MQTT: nothing there yet
        if site_extra:
            site.write_text(site.read_text() + site_extra)
        level = load_site(site).buses[0].devices[0].points[0]
        assert isinstance(level, PointConfig)
        gauge = SimUnit(1)
        gauge.set_point(level, 149.0)
        server = SimServer([gauge], port=gauge_port).start()
        centre = Process([sys.executable, "-m", "gateway.cli", "sat-centre",
                          str(centre_config(tmp_path, centre_end, broker.port, site, key_file, centre_dialect.value))],
                         tmp_path / "centre.log")
        gateway = GatewayProcess(site, tmp_path / "gateway.log").start()
        try:
            yield Rig(tmp_path, module, receiver, site, gauge, level, gateway, centre)
        finally:
            assert gateway.stop() == 0, gateway.log()
            assert centre.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM), centre.log()
            server.stop()


@pytest.mark.parametrize("centre_dialect", [Dialect.V21, Dialect.BDS3, Dialect.V40])
def test_alarm_by_satellite_through_the_centre_bridge_then_the_uplink_returns(
        tmp_path: Path, broker: Broker, collector: Platform, centre_dialect: Dialect) -> None:
    uplink_port = free_port()
    uplink: Process | None = None
    with satellite_rig(tmp_path, broker, centre_dialect, uplink_port) as rig:
        module, receiver, gateway, centre = rig.module, rig.receiver, rig.gateway, rig.centre
        try:
            wait_for(lambda: "every primary link down" in gateway.log(), 30, f"failover; log:\n{gateway.log()}")
            rig.gauge.set_point(rig.level, 152.5)  # the danger rule fires with the uplink down
            wait_for(lambda: bool(collector.records("alarm")), 40, f"the alarm through the centre;{rig.logs()}")
            [by_satellite] = collector.records("alarm")
            seq = by_satellite["seq"]
            assert by_satellite["via"] == "beidou" and by_satellite["rule"] == "level.danger"
            assert by_satellite["points"]["dam.level"]["value"] == 152.5
            assert module.sent[0].dest == CENTRE_CARD and len(module.sent[0].payload) <= module.max_payload
            wait_for(lambda: "platform acknowledged seqs" in gateway.log(), 30,
                     f"the centre's ACK released it;{rig.logs()}")
            assert f"ACK of 1 seqs sent to card {GATEWAY_CARD}" in centre.log()
            assert receiver.sent and all(s.dest == GATEWAY_CARD for s in receiver.sent)
            time.sleep(4)  # more than the module's interval: the released alarm is not sent again
            assert len(module.sent) == 1, module.sent
            assert "interval" not in module.refusals and "interval" not in receiver.refusals

            uplink = Process(["socat", f"TCP-LISTEN:{uplink_port},bind=127.0.0.1,reuseaddr,fork",
                              f"TCP:127.0.0.1:{broker.port}"], tmp_path / "uplink.log")
            wait_for(lambda: listening(uplink_port), 10, "the uplink relay")
            wait_for(lambda: bool(by_seq(collector.records("alarm"), seq, None)), 40,
                     f"the gateway's own copy by MQTT; log:\n{gateway.log()}")
            time.sleep(1)
            alarms = collector.records("alarm")
            [mqtt_copy] = by_seq(alarms, seq, None)
            assert by_seq(alarms, seq, "beidou") == [by_satellite]  # once by each path, nothing else
            same_content(by_satellite, mqtt_copy)
            # every seq that came twice came with the same content
            for record in collector.records(None):
                twins = [r for r in collector.records(None) if r.get("seq") == record.get("seq")]
                for twin in twins:
                    if twin.get("via") == "beidou" and record.get("via") is None:
                        same_content(twin, record)
        finally:
            if uplink is not None:
                uplink.stop()


def fieldgate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout


def replies(collector: Platform) -> list[dict[str, Any]]:
    return [m.body for m in collector.snapshot() if m.topic.endswith("/reply") and isinstance(m.body, dict)]


def test_a_platform_command_by_satellite_through_the_centre_and_its_reply(
        tmp_path: Path, broker: Broker, collector: Platform) -> None:
    """Platform -> gateway: a signed compact COMMAND published on ``<gw>/satcmd`` at the centre's broker is queued
    by the bridge, sent by the command receiver within its interval, executed by the gateway (uplink down), and
    the gateway's compact REPLY comes back through the receiver and is published on ``<gw>/reply``; the same
    bytes again are refused (replayed) and that REPLY is published too."""
    printed = fieldgate("command", "keygen", "--key-id", "ops", "--out", str(tmp_path))
    public = next(line.split("key:", 1)[1].strip() for line in printed.splitlines() if line.strip().startswith("key:"))
    commands = f"""commands:
  issuers:
    ops: {{key: "{public}", number: 3, allow: [ping]}}
  allow: [ping]
  max_clock_skew: 1s
"""
    with satellite_rig(tmp_path, broker, Dialect.V21, free_port(), commands) as rig:
        wait_for(lambda: "replay cache" in rig.gateway.log() and "broker connected" in rig.centre.log(), 30,
                 f"command plane and centre up;{rig.logs()}")
        time.sleep(2.5)  # a fresh replay cache refuses commands issued before it began + max_clock_skew
        signed = fieldgate("command", "sign", "--key", str(tmp_path / "ops.key"), "--key-id", "ops",
                           "--gateway", "failover-gw", "--cmd", "ping", "--compact",
                           "--gateway-number", str(GATEWAY_NUMBER), "--issuer-number", "3")
        command = bytes.fromhex(signed.strip())
        command_id = compact.decode(command).seqs[0]
        collector.publish("fieldgate/v1/failover-gw/satcmd", command)
        wait_for(lambda: bool(replies(collector)), 40, f"the REPLY through the centre;{rig.logs()}")
        [ok] = replies(collector)
        assert (ok["gw"], ok["id"], ok["kid"], ok["status"], ok["via"]) == \
            ("failover-gw", command_id, "ops", "ok", "beidou"), ok  # (the compact REPLY does not name the command)
        assert ok["result"]["pong"] is True
        assert rig.receiver.sent[0].dest == GATEWAY_CARD and rig.receiver.sent[0].payload == command
        assert rig.module.sent[0].dest == CENTRE_CARD  # the REPLY went back to the card the command came from

        collector.publish("fieldgate/v1/failover-gw/satcmd", command)  # the same bytes again: a replay
        wait_for(lambda: len(replies(collector)) >= 2, 40, f"the second REPLY;{rig.logs()}")
        refused = replies(collector)[1]
        assert (refused["id"], refused["status"], refused["reason"]) == (command_id, "rejected", "replayed"), refused
        assert "interval" not in rig.module.refusals and "interval" not in rig.receiver.refusals


def test_the_bridge_reaches_its_broker_over_mutual_tls_and_says_why_it_cannot(tmp_path: Path, rig: RigFile) -> None:
    """The broker section takes the gateway's MQTT ``tls:`` settings: with the county CA and a client certificate
    the bridge publishes through a listener that requires one; trusting another CA, it refuses the broker in one
    line naming the cause and publishes nothing."""
    pki = make_pki(tmp_path / "pki")
    tls_port = free_port()
    cert, key = pki.server
    listener = (f"listener {tls_port} 127.0.0.1\ncafile {pki.ca.cert_path}\ncertfile {cert}\nkeyfile {key}\n"
                "require_certificate true\n")
    broker = Broker(tmp_path / "tls-broker", rig.mosquitto, extra_conf=listener).start()
    collector = Platform(broker.port)  # on the plain listener
    key_file, _key = ack_key_file(tmp_path)
    client_cert, client_key = pki.client

    def config(ca: Path, name: str, receiver_port: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"""
name: {name}
receiver: {{port: {receiver_port}, dialect: "2.1", probe_timeout: 500ms}}
broker: {{host: 127.0.0.1, port: {tls_port}, reconnect: 500ms, client_id: {name},
         tls: {{ca_file: {ca}, cert_file: {client_cert}, key_file: {client_key}, check_hostname: false}}}}
state_file: {tmp_path / name}.db
gateways:
  - {{card: {GATEWAY_CARD}, ack_key_file: {key_file}, gateway_id: tls-gw, gateway_number: {GATEWAY_NUMBER},
     aliases: {{1: dam.level}}}}
""")
        return path

    alarm = compact.encode_alarm(compact.CompactAlarm(seq=12, time=int(time.time()), point="dam.level", rule=0,
                                                      level=3, value=152.5), gateway=GATEWAY_NUMBER,
                                 aliases=compact.AliasTable({1: "dam.level"}))
    try:
        wait_for(lambda: listening(tls_port), 10, "the TLS listener")
        for name, ca in (("stranger", pki.other_ca.cert_path), ("county", pki.ca.cert_path)):
            with socat_pair() as (centre_end, receiver_end), \
                    BeidouEmulator(receiver_end, card_id=CENTRE_CARD, interval_s=1,
                                   subordinates=frozenset({GATEWAY_CARD})) as receiver:
                centre = Process([sys.executable, "-m", "gateway.cli", "sat-centre",
                                  str(config(ca, name, centre_end))], tmp_path / f"{name}.log")
                try:
                    wait_for(lambda c=centre: "dialect" in c.log(), 20, f"the receiver probed; log:\n{centre.log()}")
                    receiver.inject(GATEWAY_CARD, alarm)
                    if name == "stranger":
                        wait_for(lambda c=centre: "TLS: broker certificate not signed by the configured CA" in c.log(),
                                 20, f"one clear line; log:\n{centre.log()}")
                        time.sleep(1)
                        assert not collector.records("alarm") and not receiver.sent  # nothing published, no ACK
                    else:
                        wait_for(lambda: bool(collector.records("alarm")), 20, f"published; log:\n{centre.log()}")
                        [record] = collector.records("alarm")
                        assert (record["seq"], record["via"]) == (12, "beidou")
                        wait_for(lambda: bool(receiver.sent), 20, f"the ACK; log:\n{centre.log()}")
                        assert compact.decode(receiver.sent[0].payload).acked == ((12, 12),)
                finally:
                    assert centre.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM), centre.log()
    finally:
        collector.close()
        broker.stop()
