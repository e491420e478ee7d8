"""The compact ACK's MAC (docs/satellite.md §1.4): layout, the test vector for platform implementers,
and that no change to an ACK's bytes keeps it authentic."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from gateway.compact import (
    ACK_MAC_BYTES,
    BEIDOU_LEVEL3_BYTES,
    CompactDecodeError,
    CompactMessage,
    MessageKind,
    ack_authentic,
    decode,
    encode_ack,
)

KEY = bytes(range(32))
GATEWAY, TIME = 42, 1_800_000_000
RANGES = ((17, 17), (20, 25))
# What `fieldgate ack make --gateway-number 42 --seqs 17,20-25 --time 1800000000` writes with KEY:
VECTOR = "142a6b49d200110200000205387f23ac92716b9c2396dd31"


def documented_mac(key: bytes, gateway: int, time: int, ranges: tuple[tuple[int, int], ...]) -> bytes:
    """The MAC as docs/satellite.md §1.4 describes it, written independently of the codec."""
    signed = b"fieldgate/compact-ack/v1\x00" + struct.pack(">III", gateway, time, len(ranges))
    signed += b"".join(struct.pack(">QQ", lo, hi) for lo, hi in ranges)
    return hmac.new(key, signed, hashlib.sha256).digest()[:12]


def test_vector_layout_and_mac() -> None:
    data = encode_ack(RANGES, gateway=GATEWAY, time=TIME, key=KEY)
    assert data.hex() == VECTOR
    head = bytes([0x14, 42]) + TIME.to_bytes(4, "big") + bytes([17])  # version 1 / ACK, gateway, time, first seq
    body = bytes([2, 0, 0, 2, 5])  # two ranges: 17 (gap 0, length-1 0), 20-25 (gap 2, length-1 5)
    assert data == head + body + documented_mac(KEY, GATEWAY, TIME, RANGES)
    message = decode(data)
    assert (message.kind, message.gateway, message.base_time, message.acked) == (MessageKind.ACK, 42, TIME, RANGES)
    assert message.ack_mac == data[-ACK_MAC_BYTES:] and ack_authentic(message, KEY)


def test_another_key_is_not_authentic() -> None:
    message = decode(encode_ack(RANGES, gateway=GATEWAY, time=TIME, key=KEY))
    assert not ack_authentic(message, bytes(32))
    assert not ack_authentic(message, KEY[:-1] + b"\xff")


@pytest.mark.parametrize("position", range(len(bytes.fromhex(VECTOR))))
def test_no_changed_byte_keeps_an_ack_authentic(position: int) -> None:
    """Gateway number, time, seqs, MAC: flip any bit of any byte and nothing is released."""
    for bit in range(8):
        data = bytearray.fromhex(VECTOR)
        data[position] ^= 1 << bit
        try:
            message = decode(bytes(data))
        except CompactDecodeError:
            continue
        assert not (message.kind is MessageKind.ACK and ack_authentic(message, KEY)), (position, bit)


def test_an_ack_without_a_mac_does_not_decode() -> None:
    """The layout before the MAC (what a forger without the key would send) is refused by the codec."""
    legacy = bytes.fromhex(VECTOR)[:-ACK_MAC_BYTES]
    with pytest.raises(CompactDecodeError):
        decode(legacy)
    with pytest.raises(CompactDecodeError):
        decode(bytes.fromhex(VECTOR) + b"\x00")  # nor one with trailing bytes


def test_a_message_of_another_kind_or_with_impossible_fields_is_not_an_authentic_ack() -> None:
    mac = documented_mac(KEY, GATEWAY, TIME, RANGES)
    assert not ack_authentic(CompactMessage(MessageKind.COMMAND, GATEWAY, TIME, (17,), acked=RANGES, ack_mac=mac),
                             KEY)
    assert not ack_authentic(CompactMessage(MessageKind.ACK, 2**32, TIME, (), acked=RANGES, ack_mac=mac), KEY)
    assert not ack_authentic(CompactMessage(MessageKind.ACK, GATEWAY, TIME, (), acked=RANGES, ack_mac=mac[:8]), KEY)


def test_what_fits_a_beidou_message() -> None:
    """docs/satellite.md §1.4 figures: a one-range ACK is 22 bytes for small numbers; 77 bytes carry
    a dozen or more ranges with the 12-byte MAC, where a 64-byte Ed25519 signature would leave room
    for one range at most (none with a gateway number >= 128 and seqs >= 2**14)."""
    assert len(encode_ack([(100, 100)], gateway=42, time=TIME, key=KEY)) == 22
    spread = [(10_000 + i * 20_201, 10_000 + i * 20_201 + 200) for i in range(10)]  # far-apart runs
    assert len(encode_ack(spread, gateway=1000, time=TIME, key=KEY)) <= BEIDOU_LEVEL3_BYTES
    dense = [(100 + 2 * i, 100 + 2 * i) for i in range(28)]  # every other seq lost
    assert len(encode_ack(dense, gateway=42, time=TIME, key=KEY)) <= BEIDOU_LEVEL3_BYTES
    unsigned = len(encode_ack([(2**40, 2**40)], gateway=1000, time=TIME, key=KEY)) - ACK_MAC_BYTES
    assert unsigned + 64 > BEIDOU_LEVEL3_BYTES
