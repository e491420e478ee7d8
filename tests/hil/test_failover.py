"""Cut the primary link: alarms leave by the BeiDou emulator within its interval; restore it: the
backlog drains by MQTT, and the platform's dedup by (gateway, seq) sees every record exactly once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from drivers.modbus.config import PointConfig
from gateway import compact
from gateway.config import load_site
from sim.beidou import BeidouEmulator
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.serial_pty import socat_pair
from sim.sites import GATEWAY_NUMBER, PLATFORM_CARD, ack_key_file, failover_site
from sim.support import free_port, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(150)]
ALIASES = {1: "dam.level"}


def test_alarm_by_satellite_then_drain_by_mqtt(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    gauge_port = free_port()
    with socat_pair() as (gateway_end, modem_end), BeidouEmulator(modem_end, interval_s=3, noise_period_s=0.5) as bd:
        key_file, key = ack_key_file(tmp_path)
        config = failover_site(tmp_path, gauge_port, broker.port, gateway_end, key_file)
        level = load_site(config).buses[0].devices[0].points[0]
        assert isinstance(level, PointConfig)  # a Modbus point (the site's only bus is modbus_tcp)
        gauge = SimUnit(1)
        gauge.set_point(level, 149.0)
        server = SimServer([gauge], port=gauge_port).start()
        gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
        try:
            wait_for(lambda: bool(collector.values("dam.level")), 30, f"first reading; log:\n{gateway.log()}")
            assert not bd.sent, "the satellite sent while the primary was up"
            cut = time.monotonic()
            broker.stop()
            for value in (150.0, 151.0, 152.5):  # telemetry during the outage, then the alarm
                gauge.set_point(level, value)
                time.sleep(0.5)
            wait_for(lambda: bool(bd.sent), 30, f"an alarm by satellite; log:\n{gateway.log()}")
            failover_s = bd.sent[0].at - cut  # the emulator stamps acceptance with the same monotonic clock
            message = compact.decode(bd.sent[0].payload, ALIASES)
            assert message.kind is compact.MessageKind.ALARM and message.gateway == GATEWAY_NUMBER
            assert message.alarm is not None and message.alarm.point == "dam.level" and message.alarm.rule == 7
            assert message.alarm.value == pytest.approx(152.5, abs=0.01)
            assert bd.sent[0].dest == PLATFORM_CARD and len(bd.sent[0].payload) <= bd.max_payload
            # The platform acknowledges over the satellite; the gateway stops resending it.
            bd.inject(PLATFORM_CARD, compact.encode_ack([(message.seqs[0], message.seqs[0])],
                                                        gateway=GATEWAY_NUMBER, time=int(time.time()), key=key))
            wait_for(lambda: "platform acknowledged" in gateway.log(), 15, "the satellite ACK taken")
            time.sleep(4)  # more than one service interval: nothing is sent again
            assert len(bd.sent) == 1, [compact.decode(s.payload, ALIASES) for s in bd.sent]
            assert "interval" not in bd.refusals
            broker.start()
            wait_for(lambda: any(r.get("seq") == message.seqs[0] for r in collector.records("alarm")), 30,
                     "the same alarm by MQTT after failback")
        finally:
            assert gateway.stop() == 0, gateway.log()
            server.stop()
    # Platform-side dedup by (gateway, seq): every journalled record exactly once, whatever the path.
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite") as db:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()[0]
        pending = {row[0] for row in db.execute("SELECT seq FROM records")}
    arrivals = [r["seq"] for r in collector.records(None)]
    arrivals += [s for sent in bd.sent for s in compact.decode(sent.payload, ALIASES).seqs]
    seen = set(arrivals)
    assert seen | pending == set(range(1, last + 1)), sorted(set(range(1, last + 1)) - seen - pending)
    assert any(seq in seen for seq in range(1, last + 1))
    print(f"failover: first satellite message {failover_s:.2f}s after the primary was cut "
          f"(failover_after 2s + detection + service interval)")
