"""Iridium SBD AT codec against ../shared/vectors/iridium.json (each case cites its `source`) and fuzz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.iridium.at import (
    MAX_MO,
    MAX_MT,
    AtParseError,
    ResponseBuffer,
    SessionResult,
    WriteResult,
    checksum,
    is_ring,
    parse_csq,
    parse_imei,
    parse_sbdix,
    parse_sbdrb,
    parse_write_result,
    sbdrb_size,
    sbdwb_body,
    sbdwb_command,
)

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "iridium.json"  # beside the repository


def items() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present")
    out: list[dict[str, Any]] = json.loads(VECTORS.read_text())["items"]
    return out


def test_sbdwb_exchange_vector() -> None:
    v = next(i for i in items() if "exchange" in i)  # source: RockBLOCK SBDWB reference
    cmd, ready, body, result, ok = v["exchange"]
    payload = b"hello"
    assert sbdwb_command(len(payload)) == cmd.encode() + b"\r"
    assert sbdwb_body(payload) == bytes.fromhex(body.strip("<>"))
    assert checksum(payload) == b"\x02\x14"
    assert parse_write_result(result) is WriteResult.OK
    assert (ready, ok) == ("READY", "OK")


def test_sbdix_vectors() -> None:
    lines = [i for i in items() if i.get("line", "").startswith("+SBDIX")]
    # source: Ground Control receive-data guide
    got = parse_sbdix(lines[0]["line"])
    assert got == SessionResult(0, 1, 1, 1, 6, 8)
    assert isinstance(got, SessionResult) and got.mo_ok and got.mt_received
    # source: public emulator fixtures
    got2 = parse_sbdix(lines[1]["line"])
    assert isinstance(got2, SessionResult) and got2.momsn == 219 and not got2.mt_received


def test_sbdix_failure_statuses() -> None:
    res = parse_sbdix("+SBDIX: 32, 5, 2, 0, 0, 0")
    assert isinstance(res, SessionResult)
    assert not res.mo_ok and res.reason == "no network service"
    res18 = parse_sbdix("+SBDIX: 18, 5, 0, 0, 0, 0")
    assert isinstance(res18, SessionResult) and "RF drop" in res18.reason
    assert isinstance(parse_sbdix("+SBDIX: 99, 5, 0, 0, 0, 0"), SessionResult)


def test_sbdrb_vector() -> None:
    v = next(i for i in items() if i.get("line") == "+SBDRB response")  # source: ISU AT command reference 8.11
    raw = bytes.fromhex(v["hex"])
    assert sbdrb_size(raw[:2]) == len(raw)
    assert sbdrb_size(raw[:2], announced=5) == len(raw)
    assert parse_sbdrb(raw) == b"hello"
    assert isinstance(parse_sbdrb(raw[:-1] + b"\x15"), AtParseError)


@pytest.mark.parametrize("head", [b"\xff\xff", (MAX_MT + 1).to_bytes(2, "big")])
def test_sbdrb_length_no_modem_sends_is_rejected_at_once(head: bytes) -> None:
    """Before: a garbled length field such as FFFF made sbdrb_size ask for 65 539 bytes, which the
    bounded ResponseBuffer can never hold: the link waited out its command timeout for them."""
    assert isinstance(sbdrb_size(head), AtParseError)
    assert isinstance(parse_sbdrb(head + bytes(4)), AtParseError)


def test_sbdrb_length_other_than_the_session_announced_is_rejected_at_once() -> None:
    """Before: a header of 105 after a session announced 5 bytes waited for 100 bytes that never came."""
    assert isinstance(sbdrb_size(b"\x00\x69", announced=5), AtParseError)
    assert sbdrb_size(b"\x00\x05", announced=5) == 9


@given(st.binary(min_size=2, max_size=2), st.none() | st.integers(0, MAX_MT))
def test_sbdrb_never_asks_for_more_than_the_buffer_holds(head: bytes, announced: int | None) -> None:
    size = sbdrb_size(head, announced)
    assert isinstance(size, AtParseError) or size <= ResponseBuffer.LIMIT


@pytest.mark.parametrize(
    "line", ["+SBDIX: 0, 1, 1", "+SBDIX: a, 1, 1, 1, 6, 8", "+SBDIX: 0, 70000, 0, 0, 0, 0", "OK", ""]
)
def test_bad_sbdix_is_a_parse_error(line: str) -> None:
    assert isinstance(parse_sbdix(line), AtParseError)


def test_csq_ring_and_write_results() -> None:
    assert parse_csq("+CSQ:4") == 4
    assert parse_csq("+CSQF: 0") == 0
    assert isinstance(parse_csq("+CSQ:9"), AtParseError)
    assert parse_imei(["300234063904190"]) == "300234063904190"
    assert parse_imei(["+CGSN: 300234063904190"]) == "300234063904190"
    assert isinstance(parse_imei(["30023406390419"]), AtParseError)  # 14 digits
    assert isinstance(parse_imei([]), AtParseError)
    assert is_ring("SBDRING\r")
    assert parse_write_result("2") is WriteResult.BAD_CHECKSUM
    assert isinstance(parse_write_result("READY"), AtParseError)


def test_size_limits() -> None:
    with pytest.raises(ValueError):
        sbdwb_command(MAX_MO + 1)
    with pytest.raises(ValueError):
        sbdwb_command(0)


def test_response_buffer_lines_then_binary() -> None:
    buf = ResponseBuffer()
    buf.feed(b"\r\nSBDRING\r\n+SBDIX: 0, 1, 1, 1, 5, 0\r\n\r\nOK\r\n")
    assert [buf.next_line(), buf.next_line(), buf.next_line(), buf.next_line()] == [
        "SBDRING", "+SBDIX: 0, 1, 1, 1, 5, 0", "OK", None
    ]
    buf.feed(b"\x00\x05" + sbdwb_body(b"he\r\no") + b"\r\nOK\r\n")
    head = buf.take(2)
    assert head is not None
    size = sbdrb_size(head)
    assert isinstance(size, int)
    rest = buf.take(size - 2)
    assert rest is not None and parse_sbdrb(head + rest) == b"he\r\no" and buf.next_line() == "OK"


def test_response_buffer_is_bounded() -> None:
    buf = ResponseBuffer()
    buf.feed(b"x" * 10_000)
    assert len(buf) <= ResponseBuffer.LIMIT and buf.dropped > 0


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_fuzz_parsers_never_raise(data: bytes) -> None:
    text = data.decode("latin-1")
    parse_sbdix(text)
    parse_csq(text)
    parse_write_result(text)
    parse_sbdrb(data)
    buf = ResponseBuffer()
    buf.feed(data)
    while buf.next_line() is not None:
        pass
    assert len(buf) <= ResponseBuffer.LIMIT


@given(st.binary(min_size=1, max_size=MAX_MO))
def test_checksum_round_trip_and_mt_limit(payload: bytes) -> None:
    got = parse_sbdrb(len(payload).to_bytes(2, "big") + sbdwb_body(payload))
    if len(payload) <= 270:
        assert got == payload
    else:
        assert isinstance(got, AtParseError)
