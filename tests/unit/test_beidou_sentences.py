"""BeiDou RDSS codec against ../shared/vectors/beidou.json (each case cites its `source`) and fuzz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.beidou.sentences import (
    MAX_TEXT_LINE,
    CardInfo,
    Dialect,
    Encoding,
    Feedback,
    Incoming,
    Outcome,
    ParseError,
    StreamDecoder,
    Unknown,
    Unsolicited,
    card_query,
    encode_frame,
    encode_text,
    parse_frame,
    parse_text,
    send_command,
    xor,
)

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "beidou.json"  # beside the repository


def vectors(section: str) -> list[dict[str, Any]]:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present")
    items: list[dict[str, Any]] = json.loads(VECTORS.read_text())[section]
    return items


def by_meaning(section: str, meaning: str) -> dict[str, Any]:
    return next(v for v in vectors(section) if v["meaning"].startswith(meaning))


# --- 2.1 text; source fields: "OpenWrt RDSS gateway rdss_uart.c", "acctech.com.cn solution 277", ...


def test_every_text_vector_checksums_and_parses_without_error() -> None:
    for v in vectors("text_2_1") + vectors("bds3"):
        assert not isinstance(parse_text(v["line"].encode()), ParseError), v["source"]


def test_cctxa_vector_is_what_we_send() -> None:
    v = by_meaning("text_2_1", "send to 0166166")  # source: OpenWrt RDSS gateway rdss_uart.c
    sent = send_command(Dialect.V21, 0, 166166, bytes.fromhex("3132333433333335"), Encoding.CODE)
    assert sent == v["line"].encode() + b"\r\n"
    v2 = by_meaning("text_2_1", "code mode send")  # source: public test script
    assert send_command(Dialect.V21, 0, 247718, b"12345", Encoding.CODE) == v2["line"].encode() + b"\r\n"


def test_card_query_vectors() -> None:
    assert card_query(Dialect.V21) == by_meaning("text_2_1", "query card")["line"].encode() + b"\r\n"
    assert card_query(Dialect.BDS3) == by_meaning("bds3", "BDS-3 card")["line"].encode() + b"\r\n"


def test_fki_accepted_refused_and_wait() -> None:
    ok = parse_text(by_meaning("text_2_1", "accepted")["line"].encode())
    assert ok == Feedback(Dialect.V21, "TXA", Outcome.ACCEPTED, 40, "ok")
    refused = parse_text(by_meaning("text_2_1", "refused")["line"].encode())
    assert isinstance(refused, Feedback) and refused.outcome is Outcome.REFUSED
    dwa = parse_text(by_meaning("text_2_1", "positioning refused")["line"].encode())
    assert isinstance(dwa, Feedback) and dwa.command == "DWA" and dwa.wait_s == 58
    wait = parse_text(encode_text("BDFKI", ["TXA", "N", "N", "0", "0125"]))
    assert wait == Feedback(Dialect.V21, "TXA", Outcome.WAIT, 85, "frequency not reached")


def test_bds3_fki_reason_no_card() -> None:
    fb = parse_text(by_meaning("bds3", "TCQ feedback")["line"].encode())  # source: bdrd_esp32.h
    assert isinstance(fb, Feedback)
    assert (fb.dialect, fb.command, fb.outcome, fb.reason) == (Dialect.BDS3, "TCQ", Outcome.REFUSED, "no card")
    wait = parse_text(encode_text("BDFKI", ["101500", "TCQ", "N", "1", "37"]))
    assert isinstance(wait, Feedback) and (wait.outcome, wait.wait_s) == (Outcome.WAIT, 37)


def test_bds3_fki_with_a_sixth_field_is_read_by_dialect_not_by_field_count() -> None:
    """Before: a BDS-3 $BDFKI with six fields fell into the 2.1 branch (chosen by len == 5) and came back
    as the misleading ParseError "wait time is not mmss: '0'"; a stream decoder that knows the dialect
    reads it as BDS-3 whatever the count."""
    six = encode_text("BDFKI", ["083012", "TCQ", "Y", "0", "0", "1"])
    expected = Feedback(Dialect.BDS3, "TCQ", Outcome.ACCEPTED, 0, "ok")
    assert parse_text(six) == expected
    assert parse_text(six, Dialect.BDS3) == expected
    assert list(StreamDecoder(Dialect.BDS3).feed(six)) == [expected]
    wait = parse_text(encode_text("BDFKI", ["083012.00", "TCQ", "N", "1", "37", "2"]))
    assert isinstance(wait, Feedback) and (wait.dialect, wait.outcome, wait.wait_s) == (Dialect.BDS3, Outcome.WAIT, 37)
    # a 2.1 module's line with an extra field stays 2.1, and a known 2.1 dialect reads it so
    v21 = encode_text("BDFKI", ["TXA", "Y", "Y", "0", "0040", "1"])
    assert parse_text(v21) == parse_text(v21, Dialect.V21) == Feedback(Dialect.V21, "TXA", Outcome.ACCEPTED, 40, "ok")
    # read as the wrong dialect it is an error that names the dialect, not a silent misreading
    wrong = parse_text(six, Dialect.V21)
    assert isinstance(wrong, ParseError) and "2.1" in wrong.reason


def test_module_waits_and_intervals_are_capped() -> None:
    """Before: a BDS-3 "remaining" or a card frequency of any size was taken as is: 99999999 s parked the
    link for years, and a 400-digit figure raised OverflowError out of send() / run() (float())."""
    for remaining in ("99999999", "9" * 400):
        fb = parse_text(encode_text("BDFKI", ["101500", "TCQ", "N", "1", remaining]))
        assert isinstance(fb, Feedback) and (fb.outcome, fb.wait_s) == (Outcome.WAIT, 3600)
        card = parse_text(encode_text("BDICI", ["0166166", "1", "2", "3", remaining, "3", "N"]))
        assert isinstance(card, CardInfo) and card.interval_s == 3600
        icp = parse_text(encode_text("BDICP", ["0166166", *["0"] * 12, remaining, "3"]))
        assert isinstance(icp, CardInfo) and icp.interval_s == 3600


LONG = "9" * 4301  # one digit past CPython's int-from-text limit (sys.get_int_max_str_digits)


@pytest.mark.parametrize("name,fields", [
    ("BDICI", [LONG, "1", "2", "3", "60", "3", "N"]),  # user id
    ("BDICI", ["0166166", "1", "2", "3", "60", LONG, "N"]),  # level
    ("BDTXR", ["1", LONG, "2", "", "A4CAFE"]),  # sender
    ("BDTCI", [LONG, "4207733", "2", "070222", "2", "0", "0102FF"]),  # sender
    ("BDICP", ["0166166", *["0"] * 12, "60", LONG]),  # level
])
def test_numeric_field_of_thousands_of_digits_is_a_parse_error(name: str, fields: list[str]) -> None:
    """Before: a correctly checksummed sentence with a numeric field of 4 301+ digits raised ValueError
    (int() refuses that many digits) out of parse_text and StreamDecoder.feed, which never raise."""
    line = encode_text(name, fields)
    assert isinstance(parse_text(line), ParseError)
    assert [type(p) for p in StreamDecoder().feed(line)] == [ParseError]


def test_waits_of_thousands_of_digits_are_capped() -> None:
    fb = parse_text(encode_text("BDFKI", ["101500", "TCQ", "N", "1", LONG]))
    assert isinstance(fb, Feedback) and (fb.outcome, fb.wait_s) == (Outcome.WAIT, 3600)
    card = parse_text(encode_text("BDICI", ["0166166", "1", "2", "3", LONG, "3", "N"]))
    assert isinstance(card, CardInfo) and card.interval_s == 3600


def test_card_info_vectors() -> None:
    card = parse_text(by_meaning("text_2_1", "card 0166166")["line"].encode())
    assert card == CardInfo(Dialect.V21, 166166, 40, 3, False)
    card60 = parse_text(by_meaning("text_2_1", "card 0242286")["line"].encode())
    assert isinstance(card60, CardInfo) and card60.interval_s == 60
    none = parse_text(by_meaning("text_2_1", "no card")["line"].encode())
    assert isinstance(none, CardInfo) and not none.present


def test_txr_vector_delivers_payload() -> None:
    msg = parse_text(by_meaning("text_2_1", "received normal")["line"].encode())
    assert msg == Incoming(Dialect.V21, 166166, b"12343335", "code")
    mixed = parse_text(encode_text("BDTXR", ["1", "0166166", "2", "", "A4CAFE"]))
    assert isinstance(mixed, Incoming) and mixed.payload == b"\xca\xfe"


def test_bds3_tci_and_icp() -> None:
    tci = parse_text(encode_text("BDTCI", ["04207733", "4207733", "2", "070222", "2", "0", "0102FF"]))
    assert tci == Incoming(Dialect.BDS3, 4207733, b"\x01\x02\xff", "code")
    # card 4238473, frequency 60 s (14th field), level 2 (15th); a public RT-Thread driver's comment
    icp_fields = ["4238473", "0", "0", "3", "0", "N", "2", "N", "1", "0", "0", "3", "1", "60", "2"]
    icp_fields += ["0", "0", "0", "0", "21", "0", "0", "0"]
    assert parse_text(encode_text("BDICP", icp_fields)) == CardInfo(Dialect.BDS3, 4238473, 60, 2, False)


def test_unsolicited_sentences_are_recognised() -> None:
    for name in ("BDBSI", "BDPWI", "GNRMC"):
        assert parse_text(encode_text(name, ["1", "2"])) == Unsolicited(name)


def test_host_sentences_parse_as_unknown_for_the_emulator() -> None:
    line = by_meaning("text_2_1", "send to 0166166")["line"].encode()
    assert parse_text(line) == Unknown("CCTXA", ("0166166", "1", "1", "3132333433333335"))


@pytest.mark.parametrize(
    "line",
    [b"$BDFKI,TXA,Y,Y,0,0040*18", b"$BDFKI,TXA,Y,Y,0,0040", b"BDFKI,TXA*00", b"$BDICI,x*" + b"%02X" % 0x21,
     encode_text("BDICI", ["abc", "1", "2", "3", "4", "5", "N"]), encode_text("BDFKI", ["TXA"])],
)
def test_bad_text_is_a_parse_error(line: bytes) -> None:
    assert isinstance(parse_text(line), ParseError)


# --- 4.0 binary; source: "cnblogs chen1880 11422145"


def test_txsq_vector_frame() -> None:
    v = vectors("binary_4_0")[0]
    frame = bytes.fromhex(v["hex"])
    content = bytes([0x42]) + (0x1FFA66).to_bytes(3, "big") + (32).to_bytes(2, "big") + b"\x00" + b"123 "
    assert encode_frame("TXSQ", 0, content) == frame
    # this frame is a command receiver's (指挥机 07FF25 to user 1FFA66): category 0x42, not the default
    assert send_command(Dialect.V40, 0, 0x1FFA66, b"123 ", Encoding.CODE, category=0x42) == frame
    assert parse_frame(frame) == Unknown("TXSQ", ("0", content.hex()))
    bad = frame[:-1] + bytes([frame[-1] ^ 1])
    assert isinstance(parse_frame(bad), ParseError)


# The same capture's user-to-user frame (card 1FFA66 to 1FFA67, plain payload "123456789"): category 0x46.
USER_TO_USER = bytes.fromhex("2454585351001b000000461ffa670048003132333435363738398c")


def test_txsq_information_category_is_per_link_with_a_dialect_default() -> None:
    """Before: category was chosen by encoding (code 0x42, mixed 0x46), so a code-mode send could never
    match the published user-card frame, and a module expecting 0x42 for mixed could not be served."""
    assert xor(USER_TO_USER[:-1]) == USER_TO_USER[-1]
    assert send_command(Dialect.V40, 0, 0x1FFA67, b"123456789", Encoding.CODE) == USER_TO_USER
    mixed = send_command(Dialect.V40, 0, 0x1FFA67, b"hi", Encoding.MIXED)
    assert mixed[10] == 0x46 and mixed[17:20] == b"\xa4hi"
    assert send_command(Dialect.V40, 0, 0x1FFA67, b"hi", Encoding.MIXED, category=0x42)[10] == 0x42
    # the text dialects carry no category byte: the setting does not change what they send
    for dialect in (Dialect.V21, Dialect.BDS3):
        assert (send_command(dialect, 0, 7, b"hi", Encoding.MIXED, category=0x42)
                == send_command(dialect, 0, 7, b"hi", Encoding.MIXED))
    with pytest.raises(ValueError):
        send_command(Dialect.V40, 0, 7, b"hi", Encoding.CODE, category=256)


def test_binary_replies() -> None:
    icxx = encode_frame("ICXX", 166166, bytes([0, 0, 0, 11, 6]) + (60).to_bytes(2, "big") + bytes([3, 0, 0, 0]))
    assert parse_frame(icxx) == CardInfo(Dialect.V40, 166166, 60, 3, False)
    wait = parse_frame(encode_frame("FKXX", 166166, bytes([4]) + (25).to_bytes(4, "big")))
    assert isinstance(wait, Feedback) and (wait.outcome, wait.wait_s) == (Outcome.WAIT, 25)
    ok = parse_frame(encode_frame("FKXX", 166166, b"\x00TXSQ"))
    assert isinstance(ok, Feedback) and ok.outcome is Outcome.ACCEPTED
    payload = b"\xa4hi"
    txxx = encode_frame("TXXX", 1, bytes([0x46]) + (7).to_bytes(3, "big") + b"\x0c\x1e" + (24).to_bytes(2, "big")
                        + payload + b"\x00")
    assert parse_frame(txxx) == Incoming(Dialect.V40, 7, b"hi", "mixed")


def test_stream_splits_mixed_text_binary_and_noise() -> None:
    frame = encode_frame("FKXX", 5, b"\x00TXSQ")
    stream = (b"\x00garbage" + encode_text("BDBSI", ["1"]) + frame + encode_text("GNRMC", ["x"])
              + b"$BDFKI,TXA,Y" + encode_text("BDFKI", ["TXA", "Y", "Y", "0", "0000"]))
    dec = StreamDecoder()
    out = [p for i in range(0, len(stream), 3) for p in dec.feed(stream[i : i + 3])]
    kinds = [type(p).__name__ for p in out]
    assert kinds == ["ParseError", "Unsolicited", "Feedback", "Unsolicited", "ParseError", "Feedback"]


def test_stream_buffer_is_bounded() -> None:
    dec = StreamDecoder()
    out = list(dec.feed(b"$BDTXR," + b"A" * (MAX_TEXT_LINE + 10)))
    assert isinstance(out[-1], ParseError)
    assert list(dec.feed(encode_text("BDBSI", ["1"]))) == [Unsolicited("BDBSI")]


def test_a_line_longer_than_the_limit_is_refused_however_it_arrives() -> None:
    """Before: the limit was checked only on what was left after a feed, so a line longer than
    MAX_TEXT_LINE was parsed when it arrived in one read (or in reads of up to the limit) and
    dropped when it arrived in smaller pieces."""
    line = encode_text("BDTXR", ["1", "0166166", "1", "", "AB" * (MAX_TEXT_LINE // 2)])
    for step in (len(line), MAX_TEXT_LINE, 1000):
        dec = StreamDecoder()
        out = [p for i in range(0, len(line), step) for p in dec.feed(line[i : i + step])]
        assert [type(p) for p in out] == [ParseError] and "longer than the limit" in out[0].reason, step  # type: ignore[union-attr]
        assert list(dec.feed(encode_text("BDBSI", ["1"]))) == [Unsolicited("BDBSI")]


@settings(max_examples=400)
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([encode_text("BDFKI", ["TXA", "Y", "Y", "0", "0000"]), b"$TXXX\x00\x0b", b"$ICXX",
                     encode_frame("FKXX", 1, b"\x04\x00\x00\x00\x05"), b"$BD", b"\r\n", b"*"])), max_size=30))
def test_fuzz_stream_never_raises(chunks: list[bytes]) -> None:
    dec = StreamDecoder()
    for chunk in chunks:
        for item in dec.feed(chunk):
            assert isinstance(item, (CardInfo, Feedback, Incoming, Unsolicited, Unknown, ParseError))
        assert dec.buffered <= MAX_TEXT_LINE


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_single_parsers_never_raise(data: bytes) -> None:
    parse_text(data)
    parse_frame(data)
    parse_frame(b"$FKXX" + len(data).to_bytes(2, "big") + data)


@settings(max_examples=200)
@given(st.sampled_from(["BDFKI", "BDICI", "BDTXR", "BDTCI", "BDICP"]),
       st.lists(st.text(alphabet="0123456789ABCDEFNYxé", max_size=6), max_size=25))
def test_fuzz_well_framed_bad_fields(name: str, fields: list[str]) -> None:
    body = ",".join([name, *fields]).encode("utf-8")
    parse_text(b"$" + body + b"*%02X" % xor(body))
