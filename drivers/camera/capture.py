"""Frame capture with OpenCV: a grab thread per camera that always holds the newest frame.

Why a thread that grabs continuously: RTSP and MJPEG servers buffer; a reader that only pulls when
it wants a frame gets ever older frames. The thread drains the stream at its own rate and keeps a
bounded queue (drop-oldest), so the detector always sees the newest picture.

Stalls: FFMPEG read/open timeouts make a dead stream return instead of hang; if a read still
blocks past ``stall_timeout`` the watchdog abandons that capture (its thread exits when the call
returns) and opens a fresh one. Reconnects back off exponentially up to ``reconnect_max``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger("fieldgate.camera")


@dataclass(frozen=True, slots=True)
class Frame:
    image: npt.NDArray[np.uint8]  # HxWx3 BGR
    t: float  # source time, UTC epoch seconds (media time for lossless file replay)
    index: int  # frames grabbed since start (gaps = frames dropped before use)


@dataclass(slots=True)
class CaptureStats:
    grabbed: int = 0
    dropped: int = 0
    reconnects: int = 0
    stalls: int = 0
    last_error: str = ""
    connected: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _open(source: str, timeout_ms: int) -> cv2.VideoCapture:
    if source.startswith("usb:") or source.startswith("/dev/video"):
        index = int(source.removeprefix("usb:").removeprefix("/dev/video"))
        return cv2.VideoCapture(index, cv2.CAP_V4L2)
    if "://" in source:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(source)


def is_file_source(source: str) -> bool:
    return "://" not in source and not source.startswith(("usb:", "/dev/video"))


MAX_ABANDONED = 3  # stalled grab threads kept waiting for their read() to return before no new one starts


class FrameGrabber:
    """Owns one capture. ``get()`` returns the newest frame; ``start()``/``stop()`` run the thread."""

    def __init__(
        self,
        source: str,
        *,
        lossless: bool = False,
        stall_timeout: float = 10.0,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        queue_size: int = 1,
    ) -> None:
        self.source = source
        self.is_file = is_file_source(source)
        self.lossless = lossless and self.is_file
        self.stall_timeout = stall_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.stats = CaptureStats()
        self.ended = False  # lossless file replay reached its end
        self._queue: collections.deque[Frame] = collections.deque(maxlen=max(1, queue_size))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._generation = 0
        self._last_frame_mono = time.monotonic()
        self._thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []  # grab threads left stuck in read(), bounded below
        self._index = 0

    # -- consumer side ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.is_file and not Path(self.source).is_file():
            raise FileNotFoundError(f"camera source file {self.source} does not exist")
        self._spawn()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def get(self, timeout: float) -> Frame | None:
        """The newest frame, waiting up to ``timeout``; None on timeout or after a lossless file ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self.ended or self._stop.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._watchdog()
                    return None
                self._cond.wait(min(remaining, 0.5))
            frame = self._queue.popleft()
            self._cond.notify_all()  # a lossless producer may be waiting for room
            return frame

    def _watchdog(self) -> None:
        """Called with the lock held when a consumer waited in vain: abandon a capture stuck in read()."""
        if self.ended or self.lossless:
            return
        if time.monotonic() - self._last_frame_mono > self.stall_timeout:
            self.stats.stalls += 1
            self.stats.connected = False
            self._last_frame_mono = time.monotonic()
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
            if len(self._abandoned) >= MAX_ABANDONED:
                # Each stuck thread holds a capture; do not pile up more until one returns.
                self.stats.last_error = f"{len(self._abandoned)} captures stuck in read()"
                log.error("camera %s: %d captures stuck in read(); not starting another until one returns",
                          self.source, len(self._abandoned))
                return
            log.warning("camera %s: no frame for %.0fs, restarting capture", self.source, self.stall_timeout)
            if self._thread is not None and self._thread.is_alive():
                self._abandoned.append(self._thread)
            self._spawn()

    def _spawn(self) -> None:
        self._generation += 1
        self._thread = threading.Thread(
            target=self._run, args=(self._generation,), name=f"grab:{self.source}", daemon=True
        )
        self._thread.start()

    # -- producer side ------------------------------------------------------------------------------
    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _run(self, generation: int) -> None:
        delay = self.reconnect_min
        while self._current(generation):
            cap = _open(self.source, int(self.stall_timeout * 1000))
            if not cap.isOpened():
                cap.release()
                self.stats.last_error = "cannot open source"
                self.stats.connected = False
                log.warning("camera %s: cannot open, retry in %.1fs", self.source, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.reconnect_max)
                self.stats.reconnects += 1
                continue
            self.stats.connected = True
            try:
                finished = self._pump(cap, generation)
                if finished:
                    delay = self.reconnect_min
            finally:
                cap.release()
            if self.ended or not self._current(generation):
                return
            self.stats.connected = False
            self.stats.reconnects += 1
            if not self.is_file and self._stop.wait(delay):
                return
            delay = min(delay * 2, self.reconnect_max) if not self.is_file else self.reconnect_min

    def _pump(self, cap: cv2.VideoCapture, generation: int) -> bool:
        """Read until the stream fails; True when a file reached its end normally."""
        file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if self.is_file else 0.0
        period = 1.0 / file_fps if 0.0 < file_fps <= 240.0 else 1.0 / 25.0
        started_wall, started_mono = time.time(), time.monotonic()
        n = 0
        while self._current(generation):
            ok, image = cap.read()
            if not self._current(generation):
                return False
            if not ok or image is None:
                if self.is_file:
                    if self.lossless:
                        with self._cond:
                            self.ended = True
                            self._cond.notify_all()
                    return True
                self.stats.last_error = "read failed"
                return False
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            elif image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            n += 1
            if self.is_file and not self.lossless:
                # Play a file like a live camera: at its own frame rate, not as fast as the disk allows.
                lag = started_mono + n * period - time.monotonic()
                if lag > 0 and self._stop.wait(lag):
                    return False
            t = started_wall + n * period if self.lossless else time.time()
            self._put(Frame(np.ascontiguousarray(image, np.uint8), t, self._index))
            self._index += 1
        return False

    def _put(self, frame: Frame) -> None:
        with self._cond:
            if self.lossless:
                while len(self._queue) >= (self._queue.maxlen or 1) and not self._stop.is_set():
                    self._cond.wait(0.5)
            elif len(self._queue) == self._queue.maxlen:
                self.stats.dropped += 1  # deque drops the oldest on append
            self._queue.append(frame)
            self.stats.grabbed += 1
            self._last_frame_mono = time.monotonic()
            self._cond.notify_all()
