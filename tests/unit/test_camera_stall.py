"""A camera whose read() never returns: the stall watchdog restarts the capture, but never piles up
more than a bounded number of stuck grab threads (each holds a capture). OpenCV cannot be made to hang
on demand, so the stuck capture is a stand-in whose read() blocks until the test lets it go."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from drivers.camera import capture
from drivers.camera.capture import MAX_ABANDONED, FrameGrabber

SOURCE = "rtsp://127.0.0.1:1/never"


class StuckCapture:
    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def isOpened(self) -> bool:
        return True

    def get(self, _prop: int) -> float:
        return 0.0

    def read(self) -> tuple[bool, Any]:
        self.gate.wait()
        return False, None

    def release(self) -> None:
        return None


def test_stalls_restart_the_capture_but_stuck_threads_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    monkeypatch.setattr(capture, "_open", lambda _source, _timeout_ms: StuckCapture(gate))
    grabber = FrameGrabber(SOURCE, stall_timeout=0.05, reconnect_min=0.01)
    grabber.start()
    try:
        for _ in range(30):
            assert grabber.get(0.06) is None
        alive = [t for t in threading.enumerate() if t.name == f"grab:{SOURCE}" and t.is_alive()]
        assert grabber.stats.stalls >= MAX_ABANDONED + 2
        assert len(alive) <= MAX_ABANDONED + 1, len(alive)
        assert "stuck in read()" in (grabber.stats.last_error or "")
    finally:
        gate.set()
        grabber.stop()
