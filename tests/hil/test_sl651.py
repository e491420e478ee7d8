"""The gateway side end to end on the virtual rig: journal → link runner → ``sl651`` link → TCP → the receiver
(centre/sl651.py) → mosquitto → the platform. Values equal end to end; the centre down for a while,
then back: the backlog arrives, in order. The link runs on a fast clock (one minute per second) so that the
5-minute marks of the timed report come in seconds; everything else is real (sockets, SQLite, the broker)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from centre.sl651 import Centre, CentreConfig, Publisher
from drivers.sl651.config import Sl651LinkConfig
from drivers.sl651.link import Sl651Link, Sl651Profile
from drivers.sl651.message import decode
from gateway.journal import AsyncJournal, Journal
from gateway.links import LinkRunner
from gateway.shared import NullProgress, Quality, Reading, RecordClass
from sim.broker import Broker
from sim.platform import Platform
from sim.sl651 import RecordingCentre
from sim.support import free_port, until

pytestmark = [pytest.mark.hil, pytest.mark.timeout(180)]

SPEED = 60.0  # link seconds per real second


class FastClock:
    def __init__(self) -> None:
        self.base, self.start = 1_780_000_200.0, time.monotonic()  # 2026-05-28, on a 5-minute mark

    def __call__(self) -> float:
        return self.base + (time.monotonic() - self.start) * SPEED


def link_config(port: int, **kw: Any) -> Sl651LinkConfig:
    return Sl651LinkConfig.model_validate({
        "type": "sl651", "station": "0033032601", "station_class": "reservoir", "centre": 1,
        "primary": {"host": "127.0.0.1", "port": port},
        "points": {"dam.level": "ZU", "rain.total": "PT", "rtu.battery": "VT"},
        "confirm_timeout": 0.5, "resends": 1, "settle": 0.5 * SPEED, "hourly": False, **kw})


class Box:
    """The gateway's side: a real journal, the link runner and the sl651 link."""

    def __init__(self, tmp: Path, config: Sl651LinkConfig, clock: FastClock) -> None:
        self.clock = clock
        journal = Journal(tmp / "journal.sqlite", {config.name: {RecordClass.TELEMETRY, RecordClass.ALARM}})
        self.journal = AsyncJournal(journal, queue_size=1000, commit_window=0.01)
        self.link = Sl651Link(config, clock=clock)
        self.runner = LinkRunner(self.link, self.journal, Sl651Profile(config), max_inflight=config.max_inflight)
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Box:
        self.tasks = [asyncio.create_task(t) for t in (self.journal.run(NullProgress()),
                                                       self.link.run(NullProgress()), self.runner.run(NullProgress()))]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.journal.close()

    async def reading(self, point: str, value: float, unit: str) -> None:
        await self.journal.put(RecordClass.TELEMETRY, Reading(point, value, Quality.GOOD, self.clock(), unit))


def test_values_equal_end_to_end_and_the_backlog_arrives_in_order(tmp_path: Path, broker: Broker,
                                                                   collector: Platform) -> None:
    port = free_port()
    centre_config = CentreConfig.model_validate({"listen": f"127.0.0.1:{port}", "broker": f"127.0.0.1:{broker.port}",
                                                 "points": {"0033032601": {"ZU": "dam.level"}}})

    async def run() -> None:
        publisher = Publisher(centre_config)
        centre = Centre(centre_config, publisher)
        await centre.start()
        mqtt = asyncio.create_task(publisher.run())
        clock = FastClock()
        async with Box(tmp_path, link_config(port), clock) as box:
            await until(lambda: box.link.connected, "the box connected to the centre")
            await box.reading("dam.level", 23.417, "m")
            await box.reading("rain.total", 125.5, "mm")
            await box.reading("rtu.battery", 12.61, "V")
            await until(lambda: {r["point"] for r in collector.records()} >= {"dam.level", "PT", "VT"},
                        f"the first timed report: {collector.records()}", within=30)
            # the receiver publishes before it confirms: wait for the confirmation before the outage
            await until(lambda: box.link.counts["confirmed"] >= 1, "the first report confirmed")
            # the centre goes down for a while: three windows of readings wait in the journal
            await centre.stop()
            await until(lambda: not box.link.connected, "the box saw the centre go")
            for level in (23.5, 23.6, 23.7):
                await box.reading("dam.level", level, "m")
                await asyncio.sleep(300 / SPEED)  # one 5-minute window each
            await asyncio.sleep(1)
            assert [r["value"] for r in collector.records() if r["point"] == "dam.level"] == [23.417]
            await centre.start()
            await until(lambda: [r["value"] for r in collector.records() if r["point"] == "dam.level"][-3:]
                        == [23.5, 23.6, 23.7], f"the backlog: {collector.records()}", within=60)
        mqtt.cancel()
        await asyncio.gather(mqtt, return_exceptions=True)
        await centre.stop()

    asyncio.run(run())
    levels = [r for r in collector.records() if r["point"] == "dam.level"]
    assert [r["ts"] for r in levels] == sorted(r["ts"] for r in levels), "in order"
    first = {r["point"]: r["value"] for r in collector.records()[:3]}
    assert first == {"dam.level": 23.417, "PT": 125.5, "VT": 12.61}


def test_keepalive_and_queries_on_the_same_connection(tmp_path: Path) -> None:
    """After an ESC confirmation the box stays online, sends 2FH with the next serial, answers 37H and 51H."""

    async def run() -> None:
        centre = await RecordingCentre().start()
        clock = FastClock()
        async with Box(tmp_path, link_config(centre.port, keepalive=5), clock) as box:
            await until(lambda: box.link.connected, "connected")
            await box.reading("dam.level", 21.0, "m")
            await until(lambda: any(m.frame.function == 0x32 for m in centre.messages), "a timed report", within=30)
            box.link._online_until = clock() + 600  # as after an ESC confirmation
            await until(lambda: any(m.frame.function == 0x2F for m in centre.messages), "a keep-alive", within=20)
            timed = next(m for m in centre.messages if m.frame.function == 0x32)
            alive = next(m for m in centre.messages if m.frame.function == 0x2F)
            assert timed.body is not None and alive.body is not None
            assert alive.body.serial == timed.body.serial + 1
            # 37H from the centre on the open connection: the current values come back as a 37H
            from drivers.sl651.body import Body
            from drivers.sl651.frame import ENQ, Direction, Frame
            from drivers.sl651.message import Message, encode
            writer = next(iter(centre._open))
            for function in (0x37, 0x51):
                query = Frame(Direction.DOWN, 1, bytes.fromhex("0033032601"), 0, function, b"", ENQ)
                writer.write(encode(Message(query, Body(0, box.link._station_time()))))
            await until(lambda: {0x37, 0x51} <= {m.frame.function for m in centre.messages}, "the answers")
            answer = next(m for m in centre.messages if m.frame.function == 0x37)
            assert [e.value for e in answer.body.elements if e.ident == 0x3B] == [decode_level(21.0)]  # type: ignore[union-attr]
        await centre.stop()

    asyncio.run(run())


def decode_level(value: float) -> Any:
    from drivers.sl651.elements import measured

    return measured(0x3B, value).value


def test_public_vectors_replayed_against_the_station_side() -> None:
    """The published confirmation (../shared/vectors/sl651.json, source: toymoban.com blog) is what the link
    takes as the centre's answer: a downlink for its station, the serial it waits for, ESC = stay online."""
    from tests.hil.test_sl651_centre import vectors

    down = decode(vectors()["test-report-30H-confirmation"])
    assert down.body is not None and down.frame.end == 0x1B and down.body.serial == 3
