"""Satellite payload figures for a typical reservoir site; prints JSON (figures go to bench/RESULTS.md).

Site: water level (m, 2 decimals), 5-minute rain (mm, 0.5 steps), accumulated rain (mm, 1
decimal), battery voltage (V, 2 decimals), gate opening (m, 2 decimals), inflow (m³/s,
1 decimal); one scan every 5 minutes, journal seqs interleaved with other records.
"""

from __future__ import annotations

import dataclasses
import json
import random

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
    }, indent=2))


if __name__ == "__main__":
    main()
