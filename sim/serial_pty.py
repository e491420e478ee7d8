"""A pty-serving emulator thread (the satellite modems' base) and a socat pty pair (a serial line in software).

``python -m sim.beidou PTY`` / ``python -m sim.iridium PTY`` serve one end of a pair from the shell, or a test
``start()``s/``stop()``s them (a thread). See docs/satellite.md.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self


class PtyEmulator:
    """Reads the pty in a thread and hands bytes to ``on_bytes``; ``write`` is thread-safe."""

    tick_s = 0.05  # how often ``on_tick`` runs (noise, timeouts)

    def __init__(self, device: str) -> None:
        self.device = device
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self.lock = threading.RLock()  # guards emulator state shared with the test thread

    def start(self) -> None:
        self._fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._fd)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"emulator-{self.device}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            return
        with self._write_lock:
            os.write(fd, data)

    def _loop(self) -> None:
        assert self._fd is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], self.tick_s)
            if ready:
                try:
                    data = os.read(self._fd, 4096)
                except OSError:
                    data = b""
                if data:
                    with self.lock:
                        self.on_bytes(data)
            with self.lock:
                self.on_tick(time.monotonic())

    def on_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def on_tick(self, now: float) -> None:
        return None

    def serve_forever(self) -> None:
        self.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


_PTY_LINE = re.compile(rb"PTY is (\S+)")


@contextmanager
def socat_pair() -> Iterator[tuple[str, str]]:
    """``socat -d -d pty,raw,echo=0 pty,raw,echo=0``: yields (driver end, emulator end)."""
    proc = subprocess.Popen(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        names: list[str] = []
        deadline = time.monotonic() + 10
        while len(names) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = _PTY_LINE.search(line)
            if m:
                names.append(m.group(1).decode())
        if len(names) < 2:
            raise RuntimeError("socat did not report two ptys")
        yield names[0], names[1]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
