"""SL 651-2014 codec against ../shared/vectors/sl651.json (each case cites its `source`), plus cases of our own."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.frames import crc16
from drivers.sl651.body import Body, decode_body, encode_body
from drivers.sl651.elements import SPECS, Element, Station, TimeStep, decode_bcd, encode_bcd, measured
from drivers.sl651.errors import Sl651EncodeError, Sl651Error
from drivers.sl651.frame import (
    ESC,
    ETB,
    ETX,
    NAK,
    Direction,
    Frame,
    FrameReader,
    Reassembler,
    crc,
    decode_frame,
    encode_frame,
)
from drivers.sl651.message import Message, confirmation, decode, encode, observations, to_json
from fuzz.targets import sl651 as harness
from tests.unit.cli import fieldgate

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "sl651.json"  # beside the repository
REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions" / "sl651"


def vector(name: str) -> bytes:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present")
    frames: list[dict[str, Any]] = json.loads(VECTORS.read_text())["frames"]
    return bytes.fromhex(next(f["hex"] for f in frames if f["name"] == name))


def values(raw: bytes) -> dict[str, Decimal | int | None]:
    return {o.code: o.value for o in observations(decode(raw))}


def test_every_public_vector_reencodes_byte_exact() -> None:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present")
    for item in json.loads(VECTORS.read_text())["frames"]:
        raw = bytes.fromhex(item["hex"])
        assert encode(decode(raw)) == raw, item["name"]


def test_timed_report_32h_river() -> None:
    # source: github 64673a/SL651-2014 samples/regular_report.hex (same frame in handsomestWei/sl651-2014)
    m = decode(vector("timed-report-32H-river"))
    f, b = m.frame, m.body
    assert b is not None
    assert (f.direction, f.centre, f.station.hex()) == (Direction.UP, 1, "0010100001")
    assert (f.password, f.function) == (0xA000, 0x32)
    assert len(f.body) == 43 and f.end == ETX
    assert (b.serial, b.sent) == (12, datetime(2020, 7, 24, 17, 23, 49))
    assert b.elements[0].value == Station(bytes.fromhex("0010100001"), 0x48)  # river
    assert b.elements[1].value == datetime(2020, 7, 24, 17, 23)
    assert values(vector("timed-report-32H-river")) == {
        "PJ": Decimal("13.0"), "PN05": Decimal("4.0"), "Z": Decimal("0.550"), "VT": Decimal("12.68")}
    assert vector("timed-report-32H-river")[-2:] == bytes.fromhex("8397")


def test_test_report_30h_and_its_confirmation() -> None:
    # source: public blog walk-through (toymoban.com news 686475)
    up = vector("test-report-30H")
    assert values(up) == {"PJ": Decimal("0.5"), "PT": Decimal("0.5"), "Z": Decimal("0.127"), "VT": Decimal("11.15")}
    m = decode(up)
    assert m.body is not None and m.body.serial == 3
    down = vector("test-report-30H-confirmation")
    d = decode(down)
    assert (d.frame.direction, d.frame.station.hex(), d.frame.centre, d.frame.end) == (
        Direction.DOWN, "0012345678", 1, ESC)
    assert len(d.frame.body) == 8 and d.body == Body(3, datetime(2059, 10, 11, 15, 49, 47))
    # the centre's confirmation, built from the uplink, is the published one byte for byte
    assert confirmation(m.frame, 3, datetime(2059, 10, 11, 15, 49, 47), end=ESC) == down


def test_timed_report_32h_b() -> None:
    # source: same blog
    m = decode(vector("timed-report-32H-b"))
    assert m.frame.centre == 5 and m.frame.password == 0x03E8
    assert values(vector("timed-report-32H-b")) == {
        "PJ": Decimal("4.0"), "PT": Decimal("4.0"), "Z": Decimal("10.490"), "VT": Decimal("10.99")}


def test_keepalive_with_7e_inside_is_split_by_length() -> None:
    # source: same blog; serial 7E08 puts a 7E in the body
    raw = vector("keepalive-2F-with-7E-in-body")
    m = decode(raw)
    assert m.frame.function == 0x2F and m.body is not None and m.body.serial == 0x7E08 and m.body.elements == ()
    reader = FrameReader()
    stream = raw + vector("timed-report-32H-river") + raw
    got = [g for i in range(0, len(stream), 7) for g in reader.feed(stream[i:i + 7])]
    assert [g.function for g in got if isinstance(g, Frame)] == [0x2F, 0x32, 0x2F]
    assert reader.buffered == 0


def test_set_clock_4ah_response_has_address_without_class() -> None:
    # source: a public Netty SL651 test client (code search)
    m = decode(vector("set-clock-4AH-response"))
    assert m.body is not None and m.body.elements[0].value == Station(bytes.fromhex("0030960357"), None)
    assert to_json(m)["function_name"] == "set clock"


def test_crc_is_modbus_arithmetic_sent_high_byte_first() -> None:
    raw = vector("timed-report-32H-river")
    assert crc(raw[:-2]) == crc16(raw[:-2]).to_bytes(2, "big") == raw[-2:]
    assert crc16(raw[:-2]).to_bytes(2, "little") != raw[-2:]


def test_reader_resynchronises_after_a_damaged_frame() -> None:
    good = vector("timed-report-32H-river")
    bad = bytearray(good)
    bad[30] ^= 0x01
    got = list(FrameReader().feed(b"\x00garbage" + bytes(bad) + good))
    assert isinstance(got[-1], Frame) and got[-1].function == 0x32
    assert any(isinstance(g, Sl651Error) and "CRC" in str(g) for g in got)


def test_reader_stays_bounded_on_a_stream_without_frames() -> None:
    reader = FrameReader()
    for _ in range(100):
        list(reader.feed(b"\x55" * 1000))
    assert reader.buffered <= 1


def test_bcd_sign_and_missing() -> None:
    assert decode_bcd(bytes.fromhex("FF00001250"), 3) == Decimal("-1.250")
    assert decode_bcd(b"\xff\xff\xff\xff", 3) is None
    assert encode_bcd(Decimal("-1.250"), 5, 3) == bytes.fromhex("FF00001250")
    assert encode_bcd(None, 4, 3) == b"\xff" * 4
    with pytest.raises(Sl651Error):
        decode_bcd(bytes.fromhex("0A12"), 1)
    with pytest.raises(Sl651EncodeError):
        encode_bcd(Decimal("123456789"), 4, 0)


def test_measured_values_take_the_table_definition() -> None:
    assert measured(0x39, 23.4167) == Element(0x39, 0x23, Decimal("23.417"))  # N(7,3): 4 bytes
    assert measured(0x39, -1.25) == Element(0x39, 0x2B, Decimal("-1.250"))  # FF sign: one byte more
    assert measured(0x20, None).value is None
    with pytest.raises(Sl651EncodeError):
        measured(0x38, 123.0)  # VT is N(4,2): at most 99.99
    with pytest.raises(Sl651EncodeError):
        measured(0xF4, 1.0)  # not a decimal element
    assert SPECS[0x47].decimals == 1  # DO is N(4,1) in table C.1 (some third-party tables say 2)


def _report(function: int, elements: tuple[Element, ...]) -> bytes:
    station = bytes.fromhex("0033032601")
    body = Body(7, datetime(2026, 5, 1, 8, 0, 5),
                (Element(241, 241, Station(station, 75)), Element(240, 240, datetime(2026, 5, 1, 7, 0)), *elements))
    return encode(Message(Frame(Direction.UP, 1, station, 0x1234, function, b"", ETX), body))


def test_uniform_interval_31h_reads_one_value_per_step() -> None:
    raw = _report(0x31, (Element(0x04, 0x18, TimeStep(0, 0, 5)),
                         Element(0x39, 0x23, (Decimal("1.000"), None, Decimal("1.020")), form="series")))
    m = decode(raw)
    obs = observations(m)
    assert [(o.code, o.value, o.observed, o.step) for o in obs] == [
        ("Z", Decimal("1.000"), datetime(2026, 5, 1, 7, 0), 0),
        ("Z", None, datetime(2026, 5, 1, 7, 5), 1),
        ("Z", Decimal("1.020"), datetime(2026, 5, 1, 7, 10), 2)]
    assert encode(m) == raw
    assert to_json(m)["elements"][-1]["value"] == [1.0, None, 1.02]


def test_hourly_34h_lists_have_twelve_steps_and_ff_is_invalid() -> None:
    rain = (*tuple(Decimal(n).scaleb(-1) for n in range(11)), None)
    level = (*tuple(Decimal(n).scaleb(-2) for n in range(100, 111)), None)
    raw = _report(0x34, (Element(0xF4, 0x60, rain), Element(0xF5, 0xC0, level), measured(0x26, 321.5)))
    obs = observations(decode(raw))
    drp = [o for o in obs if o.code == "DRP"]
    assert len(drp) == 12 and drp[-1].value is None and drp[1].observed == datetime(2026, 5, 1, 7, 5)
    assert [o.value for o in obs if o.code == "DRZ1"][:2] == [Decimal("1.00"), Decimal("1.01")]
    assert [o.value for o in obs if o.code == "PT"] == [Decimal("321.5")]
    assert encode(decode(raw)) == raw


def test_query_period_38h_downlink_carries_bare_identifiers() -> None:
    query = (Element(0x04, 0x18, TimeStep(0, 1, 0)), Element(0x39, 0x23, None, "bare"))
    body = Body(0, datetime(2026, 5, 1, 9, 0, 0), query,
                period=(datetime(2026, 5, 1, 0), datetime(2026, 5, 1, 8)))
    data = encode_body(0x38, Direction.DOWN, body)
    assert data.hex().upper().endswith("26050100260501080418000100" + "3923")
    assert decode_body(0x38, Direction.DOWN, data) == body


def test_m3_packets_reassemble_and_name_what_is_missing() -> None:
    whole = bytes.fromhex(harness.BUILT_IN[0])[14:-3]  # a 31H body
    station = bytes.fromhex("0010100001")
    parts = [whole[i:i + 10] for i in range(0, len(whole), 10)]
    frames = [decode_frame(encode_frame(Frame(Direction.UP, 1, station, 0xA000, 0x31, p,
                                              ETX if n == len(parts) else ETB, (len(parts), n))))
              for n, p in enumerate(parts, start=1)]
    r = Reassembler()
    assert r.add(frames[0]) is None and r.missing(frames[0]) == list(range(2, len(parts) + 1))
    for f in frames[2:]:
        assert r.add(f) is None
    assert r.missing(frames[-1]) == [2]
    done = r.add(frames[1])
    assert done is not None and done.body == whole and done.packets is None
    nak = decode_frame(confirmation(frames[-1], 1, datetime(2026, 1, 1), end=NAK, nak_packet=2))
    assert nak.packets == (len(parts), 2) and nak.end == NAK


@pytest.mark.parametrize("hexframe", [
    "7E7E",  # short
    "7E7E010010100001A00032F02B02",  # direction flag F
    "7E7E010010100001A0003200000200",  # length 0
])
def test_malformed_frames_raise_only_the_error_class(hexframe: str) -> None:
    with pytest.raises(Sl651Error):
        decode(bytes.fromhex(hexframe))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_harness_accepts_anything(data: bytes) -> None:
    harness.fuzz_one(data)


def test_fuzz_regressions_replay() -> None:
    for path in sorted(REGRESSIONS.iterdir()):
        harness.fuzz_one(path.read_bytes())  # bcd-value-beyond-28-digits: 15-byte BCD lost digits in the context


def test_cli_decode_prints_json_and_rejects_in_one_line() -> None:
    raw = vector("timed-report-32H-river")
    ran = fieldgate("sl651", "decode", raw.hex())
    assert ran.returncode == 0
    out = json.loads(ran.stdout)
    assert (out["direction"], out["function"], out["serial"], out["crc_ok"]) == ("up", "32", 12, True)
    assert [e["value"] for e in out["elements"] if e.get("code") == "Z"] == [0.55]
    bad = fieldgate("sl651", "decode", raw[:-1].hex() + "00")
    assert bad.returncode == 1 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
    assert fieldgate("sl651", "decode", "zz").returncode == 2
