"""The bus scheduler under line noise (issue 14): a garbled reply is not silence.

The real ``ModbusBus._poll`` and ``DeviceState.finish_poll`` against a scripted master that answers,
garbles or stays silent on cue, on a simulated clock (no sockets, no timing): a live unit whose
frames are damaged keeps its poll rate, and a dead unit still costs one request per probe.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from typing import cast

import pytest

from drivers.modbus.bus import PROBE_FRACTION, DeviceMode, DeviceState, ModbusBus
from drivers.modbus.config import ModbusRtuBus
from drivers.modbus.frames import FrameError
from drivers.modbus.master import Master, NoAnswer
from gateway.shared import Quality, Reading

INTERVAL, TIMEOUT = 0.3, 0.15  # the soak's serial units
PROBE_MAX = 60.0


class ScriptDone(Exception):
    pass


class ScriptedMaster:
    """Stands in for Master: each transaction answers, garbles or is silent as the script says."""

    def __init__(self, script: Iterator[str]) -> None:
        self.script = script
        self.requests = 0
        self.spent = 0.0  # line time: a silent attempt costs its timeout, a reply (garbled or not) a frame

    async def transact(self, unit: int, request: bytes, reply_within: float) -> list[int]:
        what = next(self.script, None)
        if what is None:
            raise ScriptDone
        self.requests += 1
        self.spent += reply_within if what == "silent" else 0.02
        if what == "silent":
            raise NoAnswer("timeout")
        if what == "garbled":
            raise FrameError("CRC mismatch")
        return [7] * int.from_bytes(request[3:5], "big")


def bus_with_one_unit(blocks: int = 1) -> tuple[ModbusBus, DeviceState]:
    # Points far apart so each is its own block: a probe must ask for the first block only.
    points = [{"id": f"u1.r{i}", "table": "holding", "address": 100 * i, "type": "uint16"} for i in range(blocks)]
    config = ModbusRtuBus.model_validate({
        "type": "modbus_rtu", "name": "line", "port": "/dev/null",
        "devices": [{"name": "u1", "unit_id": 1, "poll_interval": INTERVAL, "timeout": TIMEOUT, "retries": 0,
                     "offline_after": 3, "probe_max": PROBE_MAX, "points": points}]})
    bus = ModbusBus(config)
    return bus, bus.devices[0]


def run_polls(script: Sequence[str], blocks: int = 1) -> tuple[list[tuple[float, int, DeviceMode]], list[Reading]]:
    """Poll the unit each time it is due, on a simulated clock; (time asked, requests, mode after) per poll."""
    bus, device = bus_with_one_unit(blocks)
    master = ScriptedMaster(iter(script))
    readings: list[Reading] = []
    log: list[tuple[float, int, DeviceMode]] = []

    async def sink(block: Sequence[Reading]) -> None:
        readings.extend(block)

    async def main() -> None:
        t = device.next_due = device.last_heard = 0.0
        while True:
            t = max(t, device.next_due)
            before, began = master.requests, master.spent
            try:
                outcome = await bus._poll(cast(Master, master), device, sink)
            except ScriptDone:
                return
            device.finish_poll(t + master.spent - began, outcome)
            log.append((t, master.requests - before, device.mode))
            t += master.spent - began

    asyncio.run(main())
    return log, readings


def gaps(log: list[tuple[float, int, DeviceMode]]) -> list[float]:
    return [b[0] - a[0] for a, b in itertools.pairwise(log)]


def test_garbled_replies_never_take_a_live_unit_offline() -> None:
    log, readings = run_polls(["garbled"] * 40)
    assert all(mode is not DeviceMode.OFFLINE for _, _, mode in log)
    assert max(gaps(log)) == pytest.approx(INTERVAL)  # asked at its rate throughout
    assert readings and all(r.quality is Quality.BAD_FRAME and r.value is None for r in readings)


def test_a_garbled_reply_breaks_a_run_of_silence() -> None:
    # Noise on both ways: requests lost (silence) and replies damaged (garbled), never three silences in a row.
    log, _ = run_polls(["silent", "silent", "garbled", "ok", "silent", "garbled", "silent", "garbled"] * 5)
    assert all(mode is not DeviceMode.OFFLINE for _, _, mode in log)
    assert max(gaps(log)) == pytest.approx(INTERVAL)


def test_a_garbled_reply_while_offline_brings_the_unit_back_to_its_rate() -> None:
    script = ["silent"] * 6 + ["garbled"] + ["ok"] * 3
    log, _ = run_polls(script)
    modes = [mode for _, _, mode in log]
    assert modes[2:6] == [DeviceMode.OFFLINE] * 4
    assert modes[6] is DeviceMode.SUSPECT  # heard: polled again at its rate, not after a longer probe interval
    assert log[7][0] - log[6][0] == pytest.approx(INTERVAL + 0.02)
    assert modes[7:] == [DeviceMode.ONLINE] * 3


def test_a_unit_heard_a_moment_ago_is_not_left_for_seconds() -> None:
    # Eleven silent attempts in a row (3 polls, then probes) after a good answer: every probe comes within
    # a quarter of the time the unit has been silent, so 3 s unasked at a 300 ms rate takes twelve
    # (with doubling per failed probe it took seven: 4.95 s).
    log, _ = run_polls(["ok"] + ["silent"] * 11 + ["ok"])
    heard = log[0][0] + 0.02
    for (t, _, _), gap in zip(log[1:], gaps(log)[1:], strict=False):
        assert gap <= TIMEOUT + max(INTERVAL, (t + TIMEOUT - heard) * PROBE_FRACTION) + 1e-9, (t, gap)
    assert max(gaps(log)) < 3.0
    assert log[-1][2] is DeviceMode.ONLINE


def test_a_dead_unit_costs_one_request_per_probe_and_backs_off_to_probe_max() -> None:
    log, readings = run_polls(["silent"] * 150, blocks=3)
    probes = [(t, asked) for t, asked, mode in log if mode is DeviceMode.OFFLINE]
    assert all(asked == 1 for _, asked in probes[1:])  # one timeout per probe, the other blocks not asked
    intervals = gaps(log)[3:]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(intervals))  # never closer again
    assert intervals[-1] == pytest.approx(PROBE_MAX + TIMEOUT)
    # Over its first hour a dead unit is asked 81 times (3 polls, ~25 probes to reach probe_max, then
    # one a minute), against 12 000 polls at its rate; 19 times in its first minute.
    hour = [t for t, _, _ in log if t < 3600]
    assert len(hour) < 100, len(hour)
    assert len([t for t, _, _ in log if t < 60]) < 25
    assert all(r.quality is Quality.COMM_FAIL for r in readings)
