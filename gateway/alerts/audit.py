"""Hash-chained, append-only audit log of every broadcast decision and output result.

One JSON object per line: ``{"seq", "ts", "kind", "data", "prev", "hash"}`` where
``hash = sha256(prev + canonical JSON of the record without "hash")``. Each append is
flushed and fsync'd before it returns. The file rotates at ``max_bytes``; a new segment's
first record carries the previous segment's last hash, so the chain runs across files.
A torn last line (power cut mid-write) is cut off at open and the cut itself is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.fsutil import LinkRefused, ensure_dir, fsync_dir, open_append

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(str(body["prev"]).encode() + _canonical(body)).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    records: int
    last_hash: str
    error: str | None = None


def verify_file(path: Path, expect_prev: str | None = None) -> ChainCheck:
    """Check one segment. ``expect_prev`` None accepts any start (a segment after a pruned one)."""
    prev = expect_prev
    count = 0
    last_seq: int | None = None
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                return ChainCheck(False, count, prev or "", f"line {number}: not JSON")
            if prev is not None and record.get("prev") != prev:
                return ChainCheck(False, count, prev, f"line {number}: chain broken (prev does not match)")
            if last_seq is not None and record.get("seq") != last_seq + 1:
                return ChainCheck(False, count, prev or "", f"line {number}: sequence gap")
            if record_hash(record) != record.get("hash"):
                return ChainCheck(False, count, prev or "", f"line {number}: record altered (hash mismatch)")
            prev, last_seq, count = record["hash"], record["seq"], count + 1
    return ChainCheck(True, count, prev or GENESIS)


def verify_chain(path: Path) -> ChainCheck:
    """Verify the live file and its rotated segments (oldest first) as one chain."""
    segments = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    prev: str | None = None
    total = 0
    for segment in [*segments, path]:
        if not segment.exists():
            continue
        check = verify_file(segment, prev)
        if not check.ok:
            return ChainCheck(False, total + check.records, check.last_hash, f"{segment.name}: {check.error}")
        total += check.records
        prev = check.last_hash
    return ChainCheck(True, total, prev or GENESIS)


@dataclass(frozen=True)
class History:
    """Audit records newer than a horizon, oldest first, and whether they are all there is to know.

    ``complete`` is False when the chain could not be read back to the horizon: a chain that begins
    after it (new, deleted or replaced by a fresh one) or a segment that cannot be read. A reader
    must then assume that anything before the oldest record may have happened (where that lies on
    today's clock: gateway/alerts/restore.py ``HistoryStart``).
    """

    records: list[dict[str, Any]]
    complete: bool


# Shown each record read back, newest first: True once nothing older is wanted (read_history).
HistoryWanted = Callable[[dict[str, Any]], bool]

_BACKWARD_CHUNK = 64 * 1024


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The lines of a file, last first, read from the end in chunks (a segment can be 16 MiB)."""
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            step = min(_BACKWARD_CHUNK, position)
            position -= step
            handle.seek(position)
            block = handle.read(step) + rest
            lines = block.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest


def read_history(path: Path, since: float, enough: HistoryWanted | None = None) -> History:
    """Records with ``ts >= since`` from the live file and its rotated segments (newest first on disk), oldest first.

    ``enough``, when given, is shown every record read (newest first) and the read goes on past ``since``
    until it returns True: a reader that needs records by their order, not by the wall clock (a clock stepped
    forward makes recent records look old; gateway/alerts/restore.py).
    """
    segments = [path, *sorted(path.parent.glob(path.name + ".*"), key=_segment_index)]
    found: list[dict[str, Any]] = []
    satisfied = enough is None
    passed = False  # a record older than ``since`` was reached: the chain covers the horizon

    def ended() -> History:
        if passed:
            return History(list(reversed(found)), True)
        return History(list(reversed(found)), False)

    for segment in segments:
        try:
            lines = list(_lines_backwards(segment)) if segment.exists() else []
        except OSError:
            return ended()
        for raw in lines:
            try:
                record = json.loads(raw)
                ts = float(record["ts"])
            except (ValueError, KeyError, TypeError):
                # A damaged line: what lies before it cannot be trusted to be complete.
                return ended()
            if ts < since:
                passed = True
                if satisfied:
                    return ended()
            found.append(record)
            if enough is not None:
                satisfied = satisfied or enough(record)
            if record.get("prev") == GENESIS:
                # The chain starts here: nothing older exists, but it may have replaced a lost one.
                return ended()
    return ended()


def _segment_index(segment: Path) -> int:
    suffix = segment.suffix[1:]
    return int(suffix) if suffix.isdigit() else 1 << 30


class AuditLog:
    def __init__(self, path: Path | str, max_bytes: int = 16 * 1024 * 1024, keep: int = 8) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        ensure_dir(self.path.parent)
        if self.path.is_symlink():  # recovery would truncate, and appends write, through it
            raise LinkRefused(f"{self.path} is a symbolic link; the daemon writes no file through a link")
        self._seq, self._prev, torn = self._recover()
        self._file = open_append(self.path)
        if torn:
            self._append_locked("audit_recovered", {"dropped_bytes": max(torn, 0), "unreadable_tail": torn < 0})

    def history(self, since: float, enough: HistoryWanted | None = None) -> History:
        """What the chain says happened since ``since``, and before while ``enough`` wants (:func:`read_history`)."""
        with self._lock:
            self._file.flush()
            return read_history(self.path, since, enough)

    def _recover(self) -> tuple[int, str, int]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return self._from_previous_segment()
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        torn = len(data) - cut
        if torn:
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
                os.fsync(handle.fileno())
        lines = data[:cut].splitlines()
        if not lines:
            seq, prev, _ = self._from_previous_segment()
            return seq, prev, torn
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"]), torn
        except (ValueError, KeyError, TypeError):
            # Unreadable tail: keep going (broadcast must not stop), and let verify_chain show the break.
            return 0, "unreadable", torn or -1

    def _from_previous_segment(self) -> tuple[int, str, int]:
        previous = self.path.with_name(self.path.name + ".1")
        if previous.exists():
            lines = previous.read_bytes().splitlines()
            if lines:
                last = json.loads(lines[-1])
                return int(last["seq"]), str(last["hash"]), 0
        return 0, GENESIS, 0

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._append_locked(kind, data)

    async def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append from async code without blocking the loop on fsync."""
        return await asyncio.to_thread(self.append, kind, data)

    def _append_locked(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"seq": self._seq + 1, "ts": round(time.time(), 3), "kind": kind,
                                  "data": data, "prev": self._prev}
        record["hash"] = record_hash(record)
        self._file.write(_canonical(record) + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._seq, self._prev = record["seq"], record["hash"]
        if self._file.tell() >= self.max_bytes:
            self._rotate()
        return record

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                if index == self.keep:
                    older.unlink()
                else:
                    older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.rename(self.path.with_name(self.path.name + ".1"))
        self._file = open_append(self.path)
        fsync_dir(self.path.parent)  # make the renames durable

    @property
    def last_hash(self) -> str:
        return self._prev

    def close(self) -> None:
        with self._lock:
            self._file.close()
