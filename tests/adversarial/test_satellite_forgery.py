"""Forged satellite traffic against the real daemon (virtual rig: BeiDou module emulator on a pty).

Anyone with a BeiDou card can send to the gateway's card. On a satellite-only site an alarm waits
in the journal until the platform's ACK names it: a forged ACK that released it would lose it for
good. And every rejected compact command is answered over the satellite: a flood of them must not
spend the byte budget the alarms need. docs/satellite.md §1.4 and §2.1.

The forger tries both ACK layouts: the one without a MAC (what the codec took before ACKs were
authenticated) and the current one with whatever MAC it can make (none under this gateway's key).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.modbus.config import PointConfig
from gateway import compact
from gateway.commands.names import Status
from gateway.commands.reply import parse_satellite_reply
from gateway.config import load_site
from gateway.journal.batch import owed_seqs
from gateway.satbudget import REJECTED_REPLIES_PER_HOUR, REJECTED_REPLY_SHARE
from sim.beidou import BeidouEmulator
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.serial_pty import socat_pair
from sim.sites import ack_key_file, radar_gauge_bus, satellite_section
from sim.support import free_port, wait_for
from tests.hil.rig import ROOT

pytestmark = [pytest.mark.hil, pytest.mark.timeout(150)]
GATEWAY_NUMBER, PLATFORM_CARD, OTHER_CARD, ISSUER_NUMBER = 42, 1234, 4321, 3
ALIASES = {1: "dam.level"}
ACK_TIMEOUT_S = 3  # no genuine ACK within this: the alarm is sent again


def site(tmp: Path, gauge_port: int, beidou_port: str, key_file: Path, extra: str = "", policy: str = "") -> Path:
    """A satellite-only site: the BeiDou link is the only way out, so it sends at once and forgets nothing."""
    path = tmp / "site.yaml"
    path.write_text(f"""
gateway: {{id: forgery-gw, state_dir: {tmp / 'state'}}}
buses:
{radar_gauge_bus(gauge_port)}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: 152.0, hysteresis: 0.1, severity: severe}}
{satellite_section(GATEWAY_NUMBER, key_file, "{level.danger: 7}")}
links:
  - type: beidou
    name: bd
    port: {beidou_port}
    dest: {PLATFORM_CARD}
    policy: {{app_ack: true, ack_timeout: {ACK_TIMEOUT_S}s{policy}}}
{extra}""")
    return path


@dataclass
class Site:
    bd: BeidouEmulator
    gateway: GatewayProcess
    gauge: SimUnit
    level: PointConfig
    key: bytes
    state: Path

    def log(self) -> str:
        """The whole log (GatewayProcess.log() is the tail, for failure messages)."""
        return self.gateway.log_path.read_text(errors="replace")

    def messages(self) -> list[compact.CompactMessage]:
        return [compact.decode(sent.payload, ALIASES) for sent in self.bd.sent]

    def sends_of(self, seq: int) -> int:
        return sum(1 for m in self.messages() if m.kind is compact.MessageKind.ALARM and m.seqs == (seq,))


@contextmanager
def running_site(tmp: Path, level: float, extra: str = "", policy: str = "") -> Iterator[Site]:
    gauge_port = free_port()
    key_file, key = ack_key_file(tmp)
    with socat_pair() as (gateway_end, modem_end), BeidouEmulator(modem_end, interval_s=1, noise_period_s=0.5) as bd:
        config = site(tmp, gauge_port, gateway_end, key_file, extra, policy)
        point = load_site(config).buses[0].devices[0].points[0]
        assert isinstance(point, PointConfig)
        gauge = SimUnit(1)
        gauge.set_point(point, level)
        server = SimServer([gauge], port=gauge_port).start()
        gateway = GatewayProcess(config, tmp / "gateway.log").start()
        try:
            yield Site(bd, gateway, gauge, point, key, tmp / "state")
        finally:
            assert gateway.stop() == 0, gateway.log()
            server.stop()


def legacy_ack(seq: int, gateway: int) -> bytes:
    """An ACK of ``seq`` in the layout without a MAC, built by hand as a forger would (no key needed):
    version 1 / kind ACK, gateway varint, time u32, first seq varint, one range (gap 0, length - 1 = 0)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    return bytes([0x14]) + varint(gateway) + int(time.time()).to_bytes(4, "big") + varint(seq) + bytes([1, 0, 0])


def mac_ack(ranges: list[tuple[int, int]], key: bytes, gateway: int = GATEWAY_NUMBER) -> bytes:
    return compact.encode_ack(ranges, gateway=gateway, time=int(time.time()), key=key)


# Each forgery: (sender card, messages) for the alarm's seq and the genuine key (which a forger lacks; the
# wrong-card and wrong-gateway cases use it to show those checks hold even against a valid MAC).
FORGERIES: dict[str, Callable[[int, bytes], tuple[int, list[bytes]]]] = {
    "wrong-sender-card": lambda seq, key: (OTHER_CARD, [legacy_ack(seq, GATEWAY_NUMBER),
                                                        mac_ack([(seq, seq)], key)]),
    "wrong-gateway-number": lambda seq, key: (PLATFORM_CARD, [legacy_ack(seq, GATEWAY_NUMBER + 1),
                                                              mac_ack([(seq, seq)], key, GATEWAY_NUMBER + 1)]),
    "no-mac": lambda seq, key: (PLATFORM_CARD, [legacy_ack(seq, GATEWAY_NUMBER)]),
    "bad-mac": lambda seq, key: (PLATFORM_CARD, [mac_ack([(seq, seq)], bytes(32)),
                                                 mac_ack([(seq, seq)], key)[:-1] + b"\x00"]),
    # a genuine ACK the platform made for other seqs (before, or for records never sent), replayed
    "replayed-for-unsent-records": lambda seq, key: (PLATFORM_CARD, [mac_ack([(0, seq - 1), (seq + 1, seq + 500)],
                                                                             key)]),
}

EVIDENCE = {  # what the gateway logs for each
    "wrong-sender-card": f"from card {OTHER_CARD} dropped: not a platform card",
    "wrong-gateway-number": f"refused, nothing released: addressed to gateway number {GATEWAY_NUMBER + 1}",
    "no-mac": "undecodable incoming message (10 bytes): an ack ends with its 12-byte MAC; 0 bytes follow",
    "bad-mac": "refused, nothing released: its MAC was not made with this gateway's ACK key",
    "replayed-for-unsent-records": "authentic ACK names no seq this link has in flight; nothing released",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_ack_releases_nothing(tmp_path: Path, forgery: str) -> None:
    with running_site(tmp_path, level=152.5) as s:
        wait_for(lambda: any(m.kind is compact.MessageKind.ALARM for m in s.messages()), 30,
                 f"the alarm by satellite; log:\n{s.gateway.log()}")
        seq = next(m for m in s.messages() if m.kind is compact.MessageKind.ALARM).seqs[0]
        sender, forged = FORGERIES[forgery](seq, s.key)
        for data in forged:
            s.bd.inject(sender, data)
        wait_for(lambda: s.sends_of(seq) >= 2, ACK_TIMEOUT_S + 20,
                 f"the alarm sent again after ack_timeout: the forged ACK released it; log:\n{s.gateway.log()}")
        assert "platform acknowledged" not in s.log()

        s.bd.inject(PLATFORM_CARD, mac_ack([(seq, seq)], s.key))  # the platform's own ACK
        wait_for(lambda: f"platform acknowledged seqs [{seq}]" in s.log(), 20,
                 f"the genuine ACK taken; log:\n{s.gateway.log()}")
    with sqlite3.connect(s.state / "journal.sqlite") as db:
        owed = owed_seqs(db, "bd")
    assert seq not in owed
    assert EVIDENCE[forgery] in s.log()


def fieldgate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout


def sign_ping(tmp: Path) -> bytes:
    signed = fieldgate("command", "sign", "--key", str(tmp / "ops.key"), "--key-id", "ops", "--gateway", "forgery-gw",
                       "--cmd", "ping", "--compact", "--gateway-number", str(GATEWAY_NUMBER),
                       "--issuer-number", str(ISSUER_NUMBER))
    return bytes.fromhex(signed.strip())


def test_a_flood_of_rejected_commands_gets_a_few_replies_and_leaves_the_budget_to_alarms(tmp_path: Path) -> None:
    printed = fieldgate("command", "keygen", "--key-id", "ops", "--out", str(tmp_path))
    public = next(line.split("key:", 1)[1].strip() for line in printed.splitlines() if line.strip().startswith("key:"))
    commands = f"""commands:
  issuers:
    ops: {{key: "{public}", number: {ISSUER_NUMBER}, allow: [ping]}}
  allow: [ping]
  max_clock_skew: 1s
"""
    budget_per_day = 1500  # rejected replies may spend a tenth, 150 bytes: the hourly count binds first
    with running_site(tmp_path, level=100.0, extra=commands, policy=f", budget_bytes_per_day: {budget_per_day}") as s:
        log = s.log
        wait_for(lambda: "replay cache" in log() and "bd: 2.1 dialect" in log(), 20,
                 f"command plane and BeiDou link up; log:\n{s.gateway.log()}")
        time.sleep(2.5)  # a fresh replay cache refuses commands issued before it began + max_clock_skew
        forged = bytearray(sign_ping(tmp_path))
        forged[-1] ^= 0xFF  # a captured command, altered: its signature no longer verifies
        flood = 12
        for _ in range(flood):
            s.bd.inject(PLATFORM_CARD, bytes(forged))
        wait_for(lambda: log().count("satellite bd: command") >= flood, 30,
                 f"every forged command handled; log:\n{s.gateway.log()}")

        genuine = sign_ping(tmp_path)  # answered after every reply queued before it
        s.bd.inject(PLATFORM_CARD, genuine)
        wait_for(lambda: any(parse_satellite_reply(x.payload).status is Status.OK for x in s.bd.sent), 40,
                 f"the reply to a genuine ping; log:\n{s.gateway.log()}")
        replies = [parse_satellite_reply(x.payload) for x in s.bd.sent]
        rejected = [x for x, r in zip(s.bd.sent, replies, strict=True) if r.status is Status.REJECTED]
        assert 1 <= len(rejected) <= REJECTED_REPLIES_PER_HOUR, [(r.command_id, r.status, r.reason) for r in replies]
        assert sum(len(x.payload) for x in rejected) <= budget_per_day * REJECTED_REPLY_SHARE

        s.gauge.set_point(s.level, 152.5)  # and an alarm still leaves at once
        wait_for(lambda: any(m.kind is compact.MessageKind.ALARM for m in s.messages()), 30,
                 f"the alarm by satellite after the flood; log:\n{s.gateway.log()}")
