"""Local JPEG snapshot store with a size cap: the oldest files go first."""

from __future__ import annotations

import collections
import logging
import re
from pathlib import Path

from gateway.fsutil import ensure_dir, write_atomic

log = logging.getLogger("fieldgate.vision")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SnapshotStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        ensure_dir(self.dir)
        entries = sorted((p.stat().st_mtime, p) for p in self.dir.glob("*.jpg") if p.is_file())
        self._files: collections.deque[tuple[Path, int]] = collections.deque(
            (p, p.stat().st_size) for _, p in entries
        )
        self.total = sum(size for _, size in self._files)
        self._evict()

    def put(self, name: str, data: bytes) -> Path:
        """Write atomically (tmp + rename), then evict the oldest until under the cap."""
        if len(data) > self.max_bytes:
            raise ValueError(f"snapshot of {len(data)} bytes exceeds the whole store cap {self.max_bytes}")
        path = self.dir / (_SAFE.sub("_", name) + ".jpg")
        write_atomic(path, data, durable=False)
        self._files.append((path, len(data)))
        self.total += len(data)
        self._evict()
        return path

    def _evict(self) -> None:
        while self.total > self.max_bytes and self._files:
            path, size = self._files.popleft()
            self.total -= size
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove old snapshot %s: %s", path, e)
