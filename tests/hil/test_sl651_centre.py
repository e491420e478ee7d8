"""The SL 651 receiver (centre/sl651.py) on the virtual rig: stations → TCP → receiver → mosquitto →
the platform. Public vectors (../shared/vectors/sl651.json, each with its `source`) replayed as a station's
conversation; malformed frames, duplicates, a broker outage, M3 with a lost packet; the CLI as a process."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from centre.sl651 import Centre, CentreConfig, Publisher
from drivers.sl651.frame import EOT, ESC, ETB, ETX, NAK, Direction, Frame, decode_frame, encode_frame
from drivers.sl651.message import decode
from sim.broker import Broker
from sim.platform import Platform
from sim.sl651 import StationClient, timed_report
from sim.support import free_port, until, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "sl651.json"  # beside the repository
STATION = bytes.fromhex("0033032601")


def vectors() -> dict[str, bytes]:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present")
    return {f["name"]: bytes.fromhex(f["hex"]) for f in json.loads(VECTORS.read_text())["frames"]}


class Receiver:
    def __init__(self, broker_port: int, **settings: Any) -> None:
        self.config = CentreConfig.model_validate({"listen": "127.0.0.1:0", "broker": f"127.0.0.1:{broker_port}",
                                                   "publish_timeout": 2, **settings})
        self.publisher = Publisher(self.config)
        self.centre = Centre(self.config, self.publisher)
        self.port = 0
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Receiver:
        server = await self.centre.start()
        self.port = server.sockets[0].getsockname()[1]
        self.task = asyncio.create_task(self.publisher.run())
        await until(lambda: self.publisher.connected, "receiver connected to the broker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None and self.centre.server is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.centre.server.close()


def records(platform: Platform) -> list[dict[str, Any]]:
    return platform.records("telemetry")


def test_public_vectors_replayed_against_the_receiver(broker: Broker, collector: Platform,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    v = vectors()
    caplog.set_level(logging.WARNING, logger="fieldgate.sl651.centre")

    async def run() -> None:
        async with Receiver(broker.port) as rx:
            station = StationClient("127.0.0.1", rx.port)
            # source: public blog walk-through (toymoban.com news 686475): 30H, then its published confirmation
            answer = await station.report(v["test-report-30H"])
            down = decode(answer)
            assert down.frame.direction is Direction.DOWN and down.frame.end == EOT
            assert (down.frame.station.hex(), down.frame.centre, down.frame.function) == ("0012345678", 1, 0x30)
            assert down.body is not None and down.body.serial == 3
            # A downlink sent to a centre is dropped with one log line and no answer
            assert await station.report(v["test-report-30H-confirmation"], wait=0.5) == b""
            # source: 64673a/SL651-2014 regular_report.hex; same blog (32H b); the keep-alive gets no answer
            for name in ("timed-report-32H-river", "timed-report-32H-b"):
                assert decode(await station.report(v[name])).frame.end == EOT
            assert await station.report(v["keepalive-2F-with-7E-in-body"], wait=0.5) == b""
            # a 4AH answer is not a data report: nothing published, no confirmation
            assert await station.report(v["set-clock-4AH-response"], wait=0.5) == b""
            await until(lambda: len(records(collector)) == 12, f"12 records: {records(collector)}")
            await station.close()
            assert rx.centre.counts["keepalives"] == 1 and rx.centre.counts["rejected"] == 1

    asyncio.run(run())
    got = {(m.topic, r["point"]): r["value"] for m in collector.snapshot() for r in m.body["records"]}
    assert got[("fieldgate/v1/sl651-0012345678/telemetry", "Z")] == 0.127
    assert got[("fieldgate/v1/sl651-0010100001/telemetry", "PJ")] == 13.0
    assert got[("fieldgate/v1/sl651-0010100001/telemetry", "VT")] == 12.68
    assert got[("fieldgate/v1/sl651-0011223344/telemetry", "Z")] == 10.49
    river = next(r for r in records(collector) if r["point"] == "Z" and r["value"] == 0.55)
    # observation time 2020-07-24 17:23 Beijing time, class H (river), the 32H serial
    assert river["ts"] == datetime.fromisoformat("2020-07-24T17:23:00+08:00").timestamp()
    assert river["attrs"]["sl651"] == {"fn": "32", "serial": 12, "class": "H"} and river["q"] == "good"
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1


def test_malformed_frames_are_dropped_with_one_log_line_and_duplicates_published_once(
        broker: Broker, collector: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fieldgate.sl651.centre")
    good = timed_report(STATION, 41, datetime(2026, 5, 1, 8, 0, 7), {0x39: 12.345, 0x38: 12.6})
    bad = bytearray(good)
    bad[25] ^= 0x10  # damaged in transit: CRC fails

    async def run() -> None:
        async with Receiver(broker.port, confirm="ESC") as rx:
            station = StationClient("127.0.0.1", rx.port)
            assert await station.report(bytes(bad), wait=0.5) == b""  # silent (6.3.1.2 b): the station resends
            assert decode(await station.report(good)).frame.end == ESC  # same connection still in step
            assert decode(await station.report(good)).body.serial == 41  # type: ignore[union-attr]  # re-confirmed
            await until(lambda: rx.centre.counts["duplicates"] == 1, "the duplicate counted")
            await station.close()

    asyncio.run(run())
    wait_for(lambda: len(records(collector)) == 2, 5, "two records")
    assert sorted(r["point"] for r in records(collector)) == ["VT", "Z"]  # the duplicate was not published again
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "CRC" in dropped[0]


def test_broker_down_means_no_confirmation_then_the_resend_lands(tmp_path: Path, broker: Broker,
                                                                 collector: Platform) -> None:
    report = timed_report(STATION, 42, datetime(2026, 5, 1, 9, 0, 3), {0x3B: 101.25})

    async def run() -> None:
        async with Receiver(broker.port) as rx:
            station = StationClient("127.0.0.1", rx.port)
            broker.stop()
            await until(lambda: not rx.publisher.connected, "receiver sees the broker gone")
            assert await station.report(report, wait=3) == b""  # not taken by the broker: not confirmed
            broker.start()
            await until(lambda: rx.publisher.connected, "receiver reconnected", within=20)
            assert decode(await station.report(report)).frame.end == EOT  # the station's resend
            await station.close()
            assert rx.centre.counts["unconfirmed"] == 1

    asyncio.run(run())
    wait_for(lambda: [r["value"] for r in records(collector)] == [101.25], 10, "the level once")


def test_m3_lost_packet_gets_a_nak_naming_it(broker: Broker, collector: Platform) -> None:
    raw = timed_report(STATION, 43, datetime(2026, 5, 1, 10, 0, 0), {0x39: 1.5, 0x38: 12.0, 0x20: 2.5})
    text = decode_frame(raw).body
    parts = [text[i:i + 12] for i in range(0, len(text), 12)]
    packets = [encode_frame(Frame(Direction.UP, 1, STATION, 0x1234, 0x32, p, ETX if n == len(parts) else ETB,
                                  (len(parts), n))) for n, p in enumerate(parts, start=1)]

    async def run() -> None:
        async with Receiver(broker.port) as rx:
            station = StationClient("127.0.0.1", rx.port)
            for p in packets[:1] + packets[2:-1]:
                assert await station.report(p, wait=0.3) == b""
            nak = decode_frame(await station.report(packets[-1]))
            assert nak.end == NAK and nak.packets == (len(parts), 2)
            done = decode_frame(await station.report(packets[1]))  # the resent packet completes the message
            assert done.end == EOT and done.packets == (len(parts), len(parts))
            await station.close()

    asyncio.run(run())
    wait_for(lambda: len(records(collector)) == 3, 5, "three records from the M3 message")


def test_cli_receiver_process(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    """``fieldgate sl651-centre`` as the operator runs it, with a config file and a flag over it."""
    port = free_port()
    conf = tmp_path / "centre.yaml"
    conf.write_text(f"listen: 127.0.0.1:{port}\nbroker: 127.0.0.1:1\npoints:\n  '0033032601': {{Z: dam.level}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:1\nconfirm: SOON\n")
    rejected = subprocess.run([sys.executable, "-m", "gateway.cli", "sl651-centre", "--config", str(bad)],
                              capture_output=True, text=True, timeout=30)
    assert rejected.returncode == 1 and "bad.yaml:2:" in rejected.stderr
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sl651-centre", "--config", str(conf),
                             "--broker", f"127.0.0.1:{broker.port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async def run() -> bytes:
            for _ in range(200):
                try:
                    station = StationClient("127.0.0.1", port)
                    await station.connect()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the receiver's broker connection
            answer = await station.report(timed_report(STATION, 44, datetime(2026, 5, 1, 11, 0, 0), {0x39: 7.125}))
            await station.close()
            return answer

        assert decode(asyncio.run(run())).frame.end == EOT
        wait_for(lambda: [(r["point"], r["value"]) for r in records(collector)] == [("dam.level", 7.125)], 10,
                 "the mapped point")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out.decode()
    assert b"stopped after" in out
