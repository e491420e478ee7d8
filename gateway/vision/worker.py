"""The detector worker process and the shared-memory frame ring that feeds it.

Frames never travel through a pipe: the parent copies each image into a free slot of a
``multiprocessing.shared_memory`` ring and sends only (seq, slot, shape). The child letterboxes
the slot into a model-input blob, infers, decodes and sends back the boxes (small arrays); those
stages run on three threads so that inference runs back to back (``_ChildPipeline``). A slot
is reused only after its result came back, so the child never reads a half-written frame.

The child is a separate process so that a crash or a leak in the inference library cannot take
the daemon down, and so inference does not hold the event loop's GIL. If it dies or overruns
``timeout``, it is killed and restarted; frames in flight are reported lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gateway.vision.detections import Detections
from gateway.vision.letterbox import BlobCanvas, Letterbox

if TYPE_CHECKING:
    from gateway.vision.detector import Detector

log = logging.getLogger("fieldgate.vision")


class WorkerError(RuntimeError):
    """The worker could not start (bad model, bad manifest, missing backend): not retried."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    manifest: Path
    backend: str = "onnxruntime"
    threads: int = 2
    graph_optimization: str = "all"
    slots: int = 2
    timeout: float = 20.0
    # Prepare/decode on their own threads beside inference (see _ChildPipeline); False runs the
    # three steps one after the other on one thread (kept for comparison in bench/vision.py).
    overlap: bool = True


@dataclass(frozen=True, slots=True)
class WorkerResult:
    seq: int
    detections: Detections | None  # None: lost (worker died or timed out)
    roles: list[str]
    infer_s: float


def _child(conn: Connection, spec: WorkerSpec, shm_name: str, slot_bytes: int) -> None:
    """Worker process entry point (module level so the spawn start method can import it)."""
    from gateway.vision.detector import Detector
    from gateway.vision.modelcheck import open_checked

    try:
        # The manifest is checked against the model (shape, class names, input size) before any frame.
        loaded, backend, checked = open_checked(spec.manifest, spec.backend, spec.threads, spec.graph_optimization)
        detector = Detector(loaded, backend)
    except Exception as e:
        conn.send(("fatal", f"{type(e).__name__}: {e}"))
        return
    shm = SharedMemory(name=shm_name)
    try:
        conn.send(("ready", {"roles": detector.roles, "layout": detector.layout, "backend": backend.name,
                             "warnings": checked.warnings, "notes": checked.notes}))
        _ChildPipeline(conn, detector, shm, slot_bytes, canvases=min(2, spec.slots)).serve(spec.overlap)
    finally:
        shm.close()


@dataclass(slots=True)
class _Job:
    """One frame moving through the child's stages; exactly one ("ok" or "err") answer goes back."""

    seq: int
    canvas: BlobCanvas | None = None
    lb: Letterbox | None = None
    size: tuple[int, int] = (0, 0)  # frame width, height
    outputs: list[npt.NDArray[np.float32]] | None = None
    error: str | None = None
    busy_s: float = 0.0  # time spent working on it (not waiting in a queue)


class _ChildPipeline:
    """The child's work per frame, in three stages:

    * prepare: read the frame from its shared-memory slot, letterbox it into a free canvas
      (model-input blob);
    * infer: ``backend.run`` on the blob (ONNX Runtime releases the GIL while it runs);
    * finish: decode, NMS, map boxes back, send the answer.

    ``overlap``: each stage on its own thread, so while frame k is inferred frame k+1 is prepared
    and frame k-1 decoded, and inference runs back to back. With a core the inference threads do
    not use, the stages are then free (bench, 2 cores, 1 inference thread: 1.00x bare run(),
    0.91 in series). When the inference threads take every core, a stage can only run by
    preempting one of them; overlapping still measured better for the 320 models and about 3 %
    worse at 640 (bench/RESULTS.md), so it is the default. ``overlap=False``: all on one thread.

    Canvases (the only large buffers) come from a pool of ``canvases``; a frame waits for one,
    so nothing queues without a bound. Answers leave in submission order from one thread.
    """

    def __init__(
        self, conn: Connection, detector: Detector, shm: SharedMemory, slot_bytes: int, canvases: int
    ) -> None:
        self._conn, self._detector, self._shm, self._slot_bytes = conn, detector, shm, slot_bytes
        self._free: queue.SimpleQueue[BlobCanvas] = queue.SimpleQueue()
        for _ in range(max(1, canvases)):
            self._free.put(detector.new_canvas())
        self._to_infer: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._to_finish: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    def serve(self, overlap: bool) -> None:
        if not overlap:
            self._guard(self._inline_loop)
            return
        stages = [threading.Thread(target=self._guard, args=(f,), name=f"detector-{f.__name__}", daemon=True)
                  for f in (self._infer_loop, self._finish_loop)]
        for t in stages:
            t.start()
        try:
            self._guard(self._receive_loop)
        finally:
            self._to_infer.put(None)  # drains in order: infer passes it on to finish
            for t in stages:
                t.join()

    @staticmethod
    def _guard(loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException:  # a bug in the plumbing, not a bad frame: die, the parent restarts us
            log.exception("detector worker stage %s failed", loop.__name__)
            os._exit(70)

    def _next_frame(self) -> tuple[int, int, tuple[int, ...]] | None:
        try:
            msg = self._conn.recv()
        except EOFError:
            return None  # parent gone
        return None if msg is None else (int(msg[0]), int(msg[1]), tuple(msg[2]))

    def _prepare(self, seq: int, slot: int, shape: tuple[int, ...]) -> _Job:
        job = _Job(seq)
        canvas = self._free.get()  # blocks while every canvas is in flight (back-pressure)
        t0 = time.perf_counter()
        image: npt.NDArray[np.uint8] = np.ndarray(shape, np.uint8, self._shm.buf, offset=slot * self._slot_bytes)
        try:
            job.lb = self._detector.prepare(image, canvas)
            job.size = (int(shape[1]), int(shape[0]))
            job.canvas = canvas
        except Exception as e:  # one bad frame: answer it, keep serving
            job.error = f"{type(e).__name__}: {e}"
            self._free.put(canvas)
        del image  # no view of the ring may outlive the frame (the parent reuses the slot)
        job.busy_s = time.perf_counter() - t0
        return job

    def _infer(self, job: _Job) -> None:
        if job.canvas is None:
            return
        t0 = time.perf_counter()
        try:
            job.outputs = self._detector.backend.run(job.canvas.blob)
        except Exception as e:
            job.error = f"{type(e).__name__}: {e}"
        job.busy_s += time.perf_counter() - t0
        self._free.put(job.canvas)
        job.canvas = None

    def _finish(self, job: _Job) -> bool:
        """Decode and answer; False if the parent is gone."""
        t0 = time.perf_counter()
        msg: tuple[Any, ...]
        if job.error is not None or job.outputs is None or job.lb is None:
            msg = ("err", job.seq, job.error or "frame was not inferred")
        else:
            try:
                d = self._detector.finish(job.outputs, job.lb, *job.size)
                msg = ("ok", job.seq, d.boxes, d.scores, d.class_ids, job.busy_s + time.perf_counter() - t0)
            except Exception as e:  # one bad output: report, keep serving
                msg = ("err", job.seq, f"{type(e).__name__}: {e}")
        try:
            self._conn.send(msg)
        except OSError:
            return False  # parent gone; the receive side sees EOF and shuts us down
        return True

    def _inline_loop(self) -> None:
        while (frame := self._next_frame()) is not None:
            job = self._prepare(*frame)
            self._infer(job)
            if not self._finish(job):
                return

    def _receive_loop(self) -> None:
        while (frame := self._next_frame()) is not None:
            self._to_infer.put(self._prepare(*frame))

    def _infer_loop(self) -> None:
        while (job := self._to_infer.get()) is not None:
            self._infer(job)
            self._to_finish.put(job)
        self._to_finish.put(None)

    def _finish_loop(self) -> None:
        while (job := self._to_finish.get()) is not None:
            if not self._finish(job):
                return


def _settle(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class DetectorWorker:
    """Parent-side handle: ``submit`` a frame, ``result`` to collect the next answer (in order)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.roles: list[str] = []
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self._ctx = mp.get_context("spawn")  # fork would copy the event loop's threads and locks
        self._shm: SharedMemory | None = None
        self._slot_bytes = 0
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._free: list[int] = []
        self._inflight: dict[int, tuple[int, float]] = {}  # seq -> (slot, submitted monotonic)
        self._seq = 0

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def slot_bytes(self) -> int:
        return self._slot_bytes

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, frame_bytes: int) -> None:
        """(Re)create the ring for frames up to ``frame_bytes`` and start the child; WorkerError if it cannot load."""
        self._close_ring()
        self._slot_bytes = max(frame_bytes, 1)
        self._shm = SharedMemory(create=True, size=self._slot_bytes * self.spec.slots)
        await self._spawn()

    async def _spawn(self) -> None:
        assert self._shm is not None
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_child, args=(child, self.spec, self._shm.name, self._slot_bytes), daemon=True,
            name="fieldgate-detector",
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._free = list(range(self.spec.slots))
        self._inflight.clear()
        msg = await self._recv(max(60.0, self.spec.timeout))
        if msg is None or msg[0] != "ready":
            self._kill()
            reason = msg[1] if msg is not None and msg[0] == "fatal" else "worker did not start"
            raise WorkerError(f"detector worker for {self.spec.manifest}: {reason}")
        self.info = msg[1]
        self.roles = list(self.info["roles"])

    async def _recv(self, wait_s: float) -> Any:
        """The child's next message, or None if it is gone or silent for ``wait_s`` seconds.

        Waits on the pipe with the event loop's reader callback rather than a thread-pool poll:
        no thread hand-off per frame, which on a 2-core box is CPU taken from inference.
        """
        conn = self._conn
        if conn is None:
            return None
        try:
            if not conn.poll(0):
                loop = asyncio.get_running_loop()
                readable: asyncio.Future[bool] = loop.create_future()
                fd = conn.fileno()
                timer = loop.call_later(wait_s, _settle, readable, False)
                loop.add_reader(fd, _settle, readable, True)
                try:
                    if not await readable:
                        return None
                finally:
                    timer.cancel()
                    loop.remove_reader(fd)
            # Readable: a whole message (the child writes each in one go) or EOF if it died.
            return conn.recv()
        except (EOFError, OSError):
            return None

    def submit(self, image: npt.NDArray[np.uint8]) -> int:
        """Copy ``image`` into a free slot and queue it; returns its seq. Needs ``free_slots > 0``."""
        if not self._free or self._shm is None or self._conn is None:
            raise RuntimeError("no free frame slot")
        if image.nbytes > self._slot_bytes:
            raise ValueError("frame larger than a slot; restart the worker with a bigger ring")
        slot = self._free.pop()
        view: npt.NDArray[np.uint8] = np.ndarray(image.shape, np.uint8, self._shm.buf, offset=slot * self._slot_bytes)
        view[...] = image
        del view
        self._seq += 1
        self._inflight[self._seq] = (slot, time.monotonic())
        with contextlib.suppress(OSError):  # a dead child is noticed by the next result()
            self._conn.send((self._seq, slot, image.shape))
        return self._seq

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def result(self) -> WorkerResult:
        """The next result. If the child died or overran its timeout, it is restarted and every frame
        in flight comes back with ``detections=None``."""
        if not self._inflight:
            raise RuntimeError("nothing in flight")
        seq, (_slot, submitted) = next(iter(self._inflight.items()))
        remaining = max(0.1, submitted + self.spec.timeout - time.monotonic())
        msg = await self._recv(remaining)
        if msg is None:
            alive = self._proc is not None and self._proc.is_alive()
            log.error("detector worker %s; restarting", "timed out" if alive else "died")
            return await self._restart(seq)
        kind, got = msg[0], msg[1]
        entry = self._inflight.pop(got, None)
        if entry is not None:
            self._free.append(entry[0])
        if kind == "ok":
            dets = Detections(msg[2], msg[3], msg[4])
            return WorkerResult(got, dets, self.roles, float(msg[5]))
        log.warning("detector failed on frame %d: %s", got, msg[2])
        return WorkerResult(got, None, self.roles, 0.0)

    async def _restart(self, seq: int) -> WorkerResult:
        self._kill()
        self.restarts += 1
        await asyncio.sleep(min(30.0, 0.5 * 2 ** min(self.restarts, 6)))
        await self._spawn()
        return WorkerResult(seq, None, self.roles, 0.0)

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5.0)
            self._proc = None

    def _close_ring(self) -> None:
        self._kill()
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        if self._proc is not None:
            self._proc.join(timeout=2.0)
        self._close_ring()
