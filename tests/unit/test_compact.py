"""Compact satellite codec: examples, sizes and error cases (fuzzing is in test_compact_fuzz.py)."""

from __future__ import annotations

import pytest

from gateway.compact import (
    BEIDOU_LEVEL3_BYTES,
    AliasTable,
    CompactAlarm,
    CompactDecodeError,
    CompactEncodeError,
    MessageKind,
    decode,
    encode_ack,
    encode_alarm,
    encode_alarm_cancel,
    encode_command,
    encode_readings,
    pack_readings,
)
from gateway.shared import Quality, Reading

ALIASES = AliasTable(
    {1: "res.level", 2: "res.rain_5min", 3: "res.rain_total", 4: "rtu.battery", 5: "gate1.open"}
)
BASE = 1_760_000_000  # 2025-10-09


def scan(n: int, seq0: int) -> list[Reading]:
    """One 5-minute scan of a typical reservoir site (values drift slightly scan to scan)."""
    t = BASE + 300 * n
    values: list[tuple[str, float]] = [
        ("res.level", 123.45 + 0.01 * n),
        ("res.rain_5min", 0.5 + 0.5 * (n % 2)),
        ("res.rain_total", 350.5 + n),
        ("rtu.battery", 12.61 - 0.01 * n),
        ("gate1.open", 0.5),
    ]
    return [
        Reading(point, round(v, 2), Quality.GOOD, t + 0.25, seq=seq0 + i)
        for i, (point, v) in enumerate(values)
    ]


def site_readings(scans: int, seq0: int = 4_000_000) -> list[Reading]:
    out: list[Reading] = []
    for n in range(scans):
        out += scan(n, seq0 + 7 * n)  # other records (events) interleave between scans
    return out


def test_readings_round_trip_with_whole_second_times() -> None:
    readings = site_readings(3)
    msg = decode(encode_readings(readings, gateway=42, aliases=ALIASES), ALIASES)
    assert msg.kind is MessageKind.READINGS
    assert msg.gateway == 42
    assert msg.seqs == tuple(r.seq for r in readings)
    for got, want in zip(msg.readings, readings, strict=True):
        assert (got.point, got.value, got.quality) == (want.point, want.value, want.quality)
        assert got.seq == want.seq
        assert got.source_time == float(int(want.source_time))
        assert type(got.value) is type(want.value)


def test_at_least_twelve_site_readings_fit_one_beidou_message() -> None:
    packed = pack_readings(site_readings(6), gateway=42, aliases=ALIASES, max_bytes=BEIDOU_LEVEL3_BYTES)
    assert len(packed.payload) <= BEIDOU_LEVEL3_BYTES
    assert len(packed.seqs) >= 12
    assert decode(packed.payload, ALIASES).seqs == packed.seqs


def test_pack_stops_at_budget_and_reports_what_it_took() -> None:
    readings = site_readings(3)
    packed = pack_readings(readings, gateway=1, aliases=ALIASES, max_bytes=30)
    assert 0 < len(packed.seqs) < len(readings)
    assert len(packed.payload) <= 30
    assert packed.seqs == tuple(r.seq for r in readings[: len(packed.seqs)])
    bigger = pack_readings(readings, gateway=1, aliases=ALIASES, max_bytes=31)
    assert len(bigger.seqs) >= len(packed.seqs)


def test_pack_skips_points_without_alias_and_says_so() -> None:
    stray = Reading("not.aliased", 1.0, Quality.GOOD, BASE, seq=9)
    packed = pack_readings([stray, *scan(0, 10)], gateway=1, aliases=ALIASES, max_bytes=77)
    assert packed.unencodable == (9,)
    assert packed.seqs == (10, 11, 12, 13, 14)


def test_pack_with_no_room_returns_empty_payload() -> None:
    packed = pack_readings(scan(0, 1), gateway=1, aliases=ALIASES, max_bytes=5)
    assert packed.payload == b""
    assert packed.seqs == ()


def test_value_forms_and_qualities_survive() -> None:
    rs = [
        Reading("res.level", None, Quality.COMM_FAIL, BASE, seq=1),
        Reading("res.level", 7, Quality.GOOD, BASE, seq=2),
        Reading("res.level", 9, Quality.UNCERTAIN, BASE + 1, seq=3),
        Reading("gate1.open", True, Quality.GOOD, BASE, seq=5),
        Reading("gate1.open", True, Quality.GOOD, BASE, seq=6),
        Reading("rtu.battery", float("inf"), Quality.GOOD, BASE - 10, seq=4, historical=True),
        Reading("rtu.battery", 0.1 + 0.2, Quality.STALE, BASE, seq=8),
        Reading("res.rain_5min", "破损", Quality.BAD_FRAME, BASE, seq=7),
    ]
    msg = decode(encode_readings(rs, gateway=3, aliases=ALIASES), ALIASES)
    assert [(r.value, r.quality, r.seq, r.historical) for r in msg.readings] == [
        (r.value, r.quality, r.seq, r.historical) for r in rs
    ]


def test_alarm_fits_one_beidou_message_even_with_long_text() -> None:
    alarm = CompactAlarm(
        seq=2**40, time=BASE, point="res.level", rule=17, level=3, value=131.27,
        text="水位超过汛限水位，请立即转移下游群众" * 3,
    )
    raw = encode_alarm(alarm, gateway=2**31, aliases=ALIASES)
    assert len(raw) <= BEIDOU_LEVEL3_BYTES
    msg = decode(raw, ALIASES)
    assert msg.kind is MessageKind.ALARM
    assert msg.seqs == (2**40,)
    assert msg.alarm is not None
    assert alarm.text.startswith(msg.alarm.text) and msg.alarm.text
    assert (msg.alarm.point, msg.alarm.value, msg.alarm.rule, msg.alarm.level) == ("res.level", 131.27, 17, 3)


def test_alarm_cancel_names_the_alarm_it_clears() -> None:
    alarm = CompactAlarm(seq=500, time=BASE, point="res.level", rule=17, level=0, value=120.0, ref_seq=480)
    msg = decode(encode_alarm_cancel(alarm, gateway=1, aliases=ALIASES), ALIASES)
    assert msg.kind is MessageKind.ALARM_CANCEL
    assert msg.alarm == alarm


def test_ack_and_command_round_trip() -> None:
    ranges = ((100, 104), (110, 110), (200, 260))
    msg = decode(encode_ack(ranges, gateway=9, time=BASE, key=b"k" * 32))
    assert (msg.kind, msg.gateway, msg.acked, msg.seqs) == (MessageKind.ACK, 9, ranges, ())  # MAC: test_compact_ack
    cmd = decode(encode_command(b"\x01signed", gateway=9, time=BASE, command_id=77))
    assert (cmd.kind, cmd.command, cmd.seqs) == (MessageKind.COMMAND, b"\x01signed", (77,))


def test_unknown_alias_decodes_as_placeholder_not_lost() -> None:
    raw = encode_readings(scan(0, 1), gateway=1, aliases=ALIASES)
    msg = decode(raw, {1: "res.level"})
    assert [r.point for r in msg.readings][:2] == ["res.level", "@2"]


@pytest.mark.parametrize(
    "reading",
    [
        Reading("res.level", 1.0, Quality.GOOD, BASE),  # no seq: not journalled yet
        Reading("nope", 1.0, Quality.GOOD, BASE, seq=1),
        Reading("res.level", 2**70, Quality.GOOD, BASE, seq=1),
        Reading("res.level", 1.0, Quality.GOOD, -5.0, seq=1),
    ],
)
def test_unencodable_readings_raise_encode_error(reading: Reading) -> None:
    with pytest.raises(CompactEncodeError):
        encode_readings([reading], gateway=1, aliases=ALIASES)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x22",  # readings header cut short
        bytes([0x20 | 9]) + b"\x00" * 8,  # unknown kind
        bytes([0x32]) + b"\x00" * 8,  # version 3
        bytes([0x12, 1, 0, 0, 0, 0, 1, 5]),  # claims 5 readings, has none
        bytes([0x12, 1, 0, 0, 0, 0, 1, 1, 1, 0xC0 | 18]),  # DELTA with no previous value
        bytes([0x12, 1, 0, 0, 0, 0, 1, 1, 1, 0xC0 | 40]),  # reserved value code
        bytes([0x12]) + b"\xff" * 12,  # endless varint
        bytes([0x12, 1, 0, 0, 0, 0, 1, 0, 0]),  # trailing byte
    ],
)
def test_bad_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(CompactDecodeError):
        decode(data)


def test_alias_table_refuses_duplicate_points() -> None:
    with pytest.raises(ValueError, match="two aliases"):
        AliasTable({1: "a", 2: "a"})
