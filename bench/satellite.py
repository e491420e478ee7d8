"""Satellite payload figures; prints JSON (figures go to bench/RESULTS.md).

Typical site: water level (m, 2 decimals), 5-minute rain (mm, 0.5 steps), accumulated rain (mm,
1 decimal), battery voltage (V, 2 decimals), gate opening (m, 2 decimals), inflow (m³/s, 1
decimal); one scan every 5 minutes, journal seqs interleaved with other records.

``reservoir_yaml``: the points of config/reservoir.yaml itself, values made as the gauges would
hold them, written to registers and read back through the Modbus decoder (drivers/modbus/codec.py)
at each device's poll interval, then through the site's report-by-exception filter; what it
admits is the journal, packed into 77-byte messages one after another. Runs against any checkout
(``PYTHONPATH=<checkout> python bench/satellite.py``) so before and after are measured alike.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from collections.abc import Callable
from pathlib import Path

from gateway.compact import (
    BEIDOU_LEVEL3_BYTES,
    AliasTable,
    CompactAlarm,
    encode_alarm,
    encode_alarm_cancel,
    encode_readings,
    pack_readings,
)
from gateway.shared import Quality, Reading

POINTS = ["res.level", "res.rain_5min", "res.rain_total", "rtu.battery", "gate1.open", "res.inflow"]
ALIASES = AliasTable({i + 1: p for i, p in enumerate(POINTS)})
BASE = 1_760_000_000
GATEWAY = 1042
SEQ0 = 48_213_577  # a gateway a few years into service


def site(scans: int, rng: random.Random) -> list[Reading]:
    level, total, volts, inflow = 123.45, 350.5, 12.74, 18.3
    out: list[Reading] = []
    seq = SEQ0
    for n in range(scans):
        rain5 = rng.choice([0.0, 0.0, 0.5, 1.0, 2.5])
        total = round(total + rain5, 1)
        level = round(level + rng.choice([0.0, 0.01, 0.02]), 2)
        volts = round(volts + rng.choice([-0.01, 0.0, 0.01]), 2)
        inflow = round(inflow + rng.choice([-0.2, 0.0, 0.3]), 1)
        t = BASE + 300 * n + rng.random()
        values = [level, rain5, total, volts, 0.5, inflow]
        for point, v in zip(POINTS, values, strict=True):
            out.append(Reading(point, v, Quality.GOOD, t, seq=seq))
            seq += 1
        seq += rng.randint(0, 3)  # events and other records between scans
    return out


def main() -> None:
    rng = random.Random(651)
    readings = site(40, rng)
    per_message: list[int] = []
    for trial in range(20):
        start = trial * len(POINTS)
        packed = pack_readings(
            readings[start:], gateway=GATEWAY, aliases=ALIASES, max_bytes=BEIDOU_LEVEL3_BYTES
        )
        per_message.append(len(packed.seqs))
    one_scan = encode_readings(readings[: len(POINTS)], gateway=GATEWAY, aliases=ALIASES)
    alarm = CompactAlarm(seq=SEQ0 + 9_001, time=BASE + 7_200, point="res.level", rule=3, level=2, value=131.27)
    alarm_text = dataclasses.replace(alarm, text="超汛限水位 131.27 m")
    print(json.dumps({
        "message_bytes": BEIDOU_LEVEL3_BYTES,
        "site_points": len(POINTS),
        "readings_per_77_byte_message": {"min": min(per_message), "max": max(per_message),
                                         "mean": round(sum(per_message) / len(per_message), 1)},
        "one_full_scan_bytes": len(one_scan),
        "alarm_bytes": len(encode_alarm(alarm, gateway=GATEWAY, aliases=ALIASES)),
        "alarm_with_text_bytes": len(encode_alarm(alarm_text, gateway=GATEWAY, aliases=ALIASES)),
        "alarm_cancel_bytes": len(encode_alarm_cancel(alarm, gateway=GATEWAY, aliases=ALIASES)),
        "reservoir_yaml": reservoir_figures(),
    }, indent=2, ensure_ascii=False))


RESERVOIR = Path(__file__).resolve().parents[1] / "config" / "reservoir.yaml"
HOURS = 6
TICK_S = 5.0  # the fastest poll interval of the site


def _gauges(rng: random.Random, full_float32: bool) -> dict[str, Callable[[float], float]]:
    """Engineering values over time (s from the start) for each reservoir.yaml point: a flood rising.

    Resolutions: the radar level gauge 1 mm and the turbidity probe 0.01 NTU as their registers hold
    them; with ``full_float32`` both carry noise in every float32 digit instead (a worst case)."""
    state = {"tips": 35_050, "gate": 1.20}

    def level(t: float) -> float:  # 23.20 m (valid 0..80) rising 2 cm an hour, ±2 mm of ripple
        v = 23.2 + 0.02 * t / 3600 + rng.uniform(-0.002, 0.002)
        return v if full_float32 else round(v, 3)

    def rain(t: float) -> float:  # tipping bucket, 0.1 mm a tip, heavy rain: 0..3 tips per poll
        state["tips"] += rng.choice([0, 0, 1, 1, 2, 3])
        return state["tips"] / 10

    def gate(t: float) -> float:  # the spillway gate opened 0.1 m every two hours
        if t > 0 and t % 7200 < TICK_S:
            state["gate"] = round(state["gate"] + 0.1, 2)
        return state["gate"]

    def turbidity(t: float) -> float:  # 20 NTU, rising with the flood, ±3 % of noise
        v = (20 + 30 * t / (HOURS * 3600)) * rng.uniform(0.97, 1.03)
        return v if full_float32 else round(v, 2)

    return {"dam.level": level, "rain.total": rain, "gate.opening": gate, "gate.fault": lambda t: 0.0,
            "water.turbidity": turbidity}


def reservoir_site(rng: random.Random, full_float32: bool, by_exception: bool,
                   late_s: tuple[float, float] = (0.0, 0.3)) -> tuple[list[Reading], AliasTable]:
    """The journal of HOURS of reservoir.yaml's points, and its aliases (the config's, then the points it
    leaves without one, numbered on: the satellite path needs one for every point it carries).

    ``by_exception``: each device polled at its poll interval, journalled as the report filter admits
    (the rain gauge dominates in heavy rain). Otherwise a scan of every point every 5 minutes, as in
    ``site()`` (the model of the 18-20 figure and of issue 17's 9-15). ``late_s``: each reading's time is its
    poll instant plus between these seconds (a poll answered late; across a second boundary the whole second
    moves now and then)."""
    from drivers.modbus.codec import decode_point, encode_point
    from gateway.config import load_site
    from gateway.report import ReportFilter
    from gateway.shared import PointInfo

    config = load_site(str(RESERVOIR))
    devices = [(d, p) for bus in config.buses for d in bus.devices for p in d.points]
    aliases = dict(config.satellite.aliases)
    for _, point in devices:
        if point.id not in aliases.values():
            aliases[max(aliases, default=0) + 1] = point.id
    report = ReportFilter([PointInfo(p.id, p.unit, p.report) for _, p in devices])
    gauges = _gauges(rng, full_float32)
    journal: list[Reading] = []
    seq = SEQ0
    tick = TICK_S if by_exception else 300.0
    for step in range(int(HOURS * 3600 / tick)):
        t = step * tick
        for device, point in devices:
            if by_exception and t % device.poll_interval:
                continue
            value = decode_point(point, encode_point(point, gauges[point.id](t)))  # as the bus reads it
            reading = Reading(point.id, value, Quality.GOOD, BASE + t + rng.uniform(*late_s), unit=point.unit)
            if report.admit(reading) is not None or not by_exception:
                journal.append(dataclasses.replace(reading, seq=seq))
                seq += 1 + (rng.random() < 0.05)  # now and then an event or health record between
    return journal, AliasTable(aliases)


def per_message(journal: list[Reading], aliases: AliasTable, **options: int) -> dict[str, float]:
    """Readings in each 77-byte message when the journal leaves one full message after another."""
    counts: list[int] = []
    rest = journal
    while rest:
        packed = pack_readings(rest, gateway=GATEWAY, aliases=aliases, max_bytes=BEIDOU_LEVEL3_BYTES, **options)
        if not packed.seqs:
            break
        counts.append(len(packed.seqs))
        rest = rest[len(packed.seqs) + len(packed.unencodable):]
    full = counts[:-1] or counts  # the last message is whatever was left over
    return {"messages": len(counts), "min": min(full), "max": max(full), "mean": round(sum(full) / len(full), 1)}


def reservoir_figures() -> dict[str, object]:
    out: dict[str, object] = {"config": "config/reservoir.yaml", "hours": HOURS}
    for model, by_exception in (("scan_every_5_min", False), ("by_exception", True)):
        for name, noisy in (("gauge_resolution", False), ("full_float32_noise", True)):
            journal, aliases = reservoir_site(random.Random(17), noisy, by_exception)
            out[f"{model}/{name}"] = {"journal_readings": len(journal),
                                      "readings_per_77_byte_message": per_message(journal, aliases)}
    if "version" in inspect.signature(pack_readings).parameters:  # the branch's codec: both versions, late polls
        journal, aliases = reservoir_site(random.Random(17), False, True, late_s=(0.5, 1.5))
        for version in (1, 2):
            out[f"by_exception/gauge_resolution/polls_answered_0.5_to_1.5s_late/v{version}"] = {
                "readings_per_77_byte_message": per_message(journal, aliases, version=version)}
    return out


if __name__ == "__main__":
    main()
