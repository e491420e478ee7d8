"""A seeded byte mutator: the engine when atheris is not installed (and for the CI smoke run).

Deterministic for a given seed, so a smoke failure reproduces exactly. It has no coverage
feedback: it runs every seed once as is, then stacks 1..16 random edits (libFuzzer's set,
plus two that matter for these parsers: a number grown to thousands of digits, and a run
repeated until the input is long) on seeds or splices of two seeds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence

_INTERESTING_BYTES = bytes([0, 1, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x20, 0x24, 0x2A, 0x2C, 0x2E, 0x2D, 0x30, 0x39,
                            0x3A, 0x41, 0x46, 0x7B, 0x7D, 0x22, 0x5C])
_INTERESTING_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                     0xFFFFFFFF)
_GENERIC_TOKENS = (b"0", b"-1", b"9" * 20, b"1e309", b"NaN", b"null", b"true", b"\\u0000", b"\xc3\xa9", b"\xff\xfe",
                   b"\r\n", b"OK", b"ERROR", b"$", b"*", b",", b"{", b"}", b"[", b"]", b'"', b":")
_TOKEN_SPLIT = re.compile(rb"[\s,*$:=;{}\[\]\"]+")


def dictionary(seeds: Sequence[bytes], extra: Sequence[bytes] = ()) -> list[bytes]:
    """Tokens found in the seeds (fields between delimiters) plus generic ones, at most 512."""
    found: dict[bytes, None] = dict.fromkeys(extra)
    for seed in seeds:
        for token in _TOKEN_SPLIT.split(seed):
            if 2 <= len(token) <= 24:
                found[token] = None
            if len(found) >= 480:
                break
    found.update(dict.fromkeys(_GENERIC_TOKENS))
    return list(found)


class Mutator:
    def __init__(self, seeds: Sequence[bytes], *, seed: int, max_len: int, tokens: Sequence[bytes] = ()) -> None:
        self.seeds = [s[:max_len] for s in seeds] or [b""]
        self.max_len = max_len
        self.rng = random.Random(seed)
        self.tokens = dictionary(self.seeds, tokens)
        self._edits: tuple[Callable[[bytearray], None], ...] = (
            self._flip_bit, self._set_byte, self._interesting_byte, self._insert_random, self._delete_range,
            self._duplicate_range, self._insert_token, self._overwrite_token, self._interesting_int,
            self._add_to_byte, self._truncate, self._grow_number, self._repeat_run, self._swap_ranges,
        )

    def inputs(self) -> Iterator[bytes]:
        """Every seed once, then mutants forever."""
        yield from self.seeds
        while True:
            yield self.mutant()

    def mutant(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(self.seeds))
        if len(self.seeds) > 1 and rng.random() < 0.1:
            other = rng.choice(self.seeds)
            data = data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]
        for _ in range(1 << rng.randint(0, 4)):
            rng.choice(self._edits)(data)
        return bytes(data[: self.max_len])

    # --- edits ------------------------------------------------------------------------

    def _pos(self, data: bytearray) -> int:
        return self.rng.randrange(len(data)) if data else 0

    def _span(self, data: bytearray) -> tuple[int, int]:
        start = self._pos(data)
        return start, min(len(data), start + self.rng.choice((1, 2, 4, 8, 16, 64)))

    def _flip_bit(self, data: bytearray) -> None:
        if data:
            data[self._pos(data)] ^= 1 << self.rng.randrange(8)

    def _set_byte(self, data: bytearray) -> None:
        if data:
            data[self._pos(data)] = self.rng.randrange(256)

    def _interesting_byte(self, data: bytearray) -> None:
        if data:
            data[self._pos(data)] = self.rng.choice(_INTERESTING_BYTES)

    def _insert_random(self, data: bytearray) -> None:
        at = self.rng.randint(0, len(data))
        data[at:at] = self.rng.randbytes(self.rng.randint(1, 8))

    def _delete_range(self, data: bytearray) -> None:
        start, end = self._span(data)
        del data[start:end]

    def _duplicate_range(self, data: bytearray) -> None:
        start, end = self._span(data)
        at = self.rng.randint(0, len(data))
        data[at:at] = data[start:end]

    def _swap_ranges(self, data: bytearray) -> None:
        a, b = sorted((self._pos(data), self._pos(data)))
        data[:] = data[b:] + data[a:b] + data[:a]

    def _insert_token(self, data: bytearray) -> None:
        at = self.rng.randint(0, len(data))
        data[at:at] = self.rng.choice(self.tokens)

    def _overwrite_token(self, data: bytearray) -> None:
        token = self.rng.choice(self.tokens)
        at = self._pos(data)
        data[at : at + len(token)] = token

    def _interesting_int(self, data: bytearray) -> None:
        width = self.rng.choice((1, 2, 4))
        value = self.rng.choice(_INTERESTING_INTS) & ((1 << (8 * width)) - 1)
        raw = value.to_bytes(width, self.rng.choice(("big", "little")))
        at = self._pos(data)
        data[at : at + width] = raw

    def _add_to_byte(self, data: bytearray) -> None:
        if data:
            at = self._pos(data)
            data[at] = (data[at] + self.rng.randint(-16, 16)) & 0xFF

    def _truncate(self, data: bytearray) -> None:
        del data[self.rng.randint(0, len(data)) :]

    def _grow_number(self, data: bytearray) -> None:
        """A run of digits becomes very long (or very negative): parsers that trust int() meet its limits."""
        runs = [m.span() for m in re.finditer(rb"\d+", data)]
        if not runs:
            return
        start, end = self.rng.choice(runs)
        digits = self.rng.choice((b"9", b"0", b"1", b"12345"))
        length = self.rng.choice((20, 310, 400, 4301, 5000))
        data[start:end] = (b"-" if self.rng.random() < 0.2 else b"") + (digits * length)[:length]

    def _repeat_run(self, data: bytearray) -> None:
        """A short run repeated up to the size limit: bounded buffers and length fields meet their ends."""
        start, end = self._span(data)
        chunk = bytes(data[start:end]) or self.rng.choice(self.tokens)
        times = self.rng.choice((2, 16, 256, self.max_len // max(1, len(chunk))))
        data[start:end] = chunk * times
