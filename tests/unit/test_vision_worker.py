"""Worker process over shared memory (real spawn, real onnxruntime), tiling plan, snapshot store cap."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import itertools

from gateway.vision.snapstore import SnapshotStore
from gateway.vision.tiling import TileSweep, make_tiles
from gateway.vision.worker import DetectorWorker, WorkerError, WorkerSpec

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "models" / "baseline-fire-smoke.yaml"


def flame_frame() -> np.ndarray:
    img = np.full((120, 160, 3), (20, 40, 25), np.uint8)
    img[40:80, 30:50] = (30, 140, 255)
    return img


def test_worker_detects_through_shared_memory_and_survives_a_kill() -> None:
    async def scenario() -> None:
        w = DetectorWorker(WorkerSpec(BASELINE, threads=1, slots=2, timeout=30))
        await w.start(160 * 120 * 3)
        try:
            first_pid = w.pid
            seqs = [w.submit(flame_frame()), w.submit(np.zeros((120, 160, 3), np.uint8))]
            assert w.free_slots == 0
            r1, r2 = await w.result(), await w.result()
            assert [r1.seq, r2.seq] == seqs and w.free_slots == 2
            assert r1.detections is not None and r2.detections is not None
            assert 0 in r1.detections.class_ids.tolist() and len(r2.detections) == 0
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)
            w.submit(flame_frame())
            lost = await w.result()
            assert lost.detections is None and w.restarts == 1 and w.pid != first_pid
            w.submit(flame_frame())
            again = await w.result()
            assert again.detections is not None and len(again.detections) >= 1
        finally:
            w.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_worker_with_bad_model_fails_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    (tmp_path / "m.yaml").write_text("file: m.onnx\nsha256: 'x'\n")

    async def scenario() -> None:
        w = DetectorWorker(WorkerSpec(tmp_path / "m.yaml", threads=1))
        try:
            await w.start(1000)
        finally:
            w.close()

    with pytest.raises(WorkerError, match="invalid"):
        asyncio.run(scenario())


def test_tiles_cover_the_frame_with_overlap() -> None:
    tiles = make_tiles(1920, 1080, 320, 320, 0.2)
    assert tiles[0][:2] == (0.0, 0.0) and tiles[-1][2:] == (1920.0, 1080.0)
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 320 * 0.8 for a, b in itertools.pairwise(xs))
    covered = np.zeros((1080, 1920), bool)
    for x1, y1, x2, y2 in tiles:
        assert x2 - x1 == 320 and y2 - y1 == 320
        covered[int(y1):int(y2), int(x1):int(x2)] = True
    assert covered.all()
    assert make_tiles(200, 100, 320, 320, 0.2) == [(0.0, 0.0, 200.0, 100.0)]
    sweep = TileSweep(320, 320, 0.0, full_view_every=1)
    views = [sweep.next_view(640, 320) for _ in range(4)]
    assert views == [(0.0, 0.0, 320.0, 320.0), (320.0, 0.0, 640.0, 320.0), (0.0, 0.0, 640.0, 320.0),
                     (0.0, 0.0, 320.0, 320.0)]


def test_snapshot_store_evicts_oldest_under_cap(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=2500)
    paths = [store.put(f"ev/{i}", bytes(1000)) for i in range(4)]
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert store.total == 2000 and "/" not in paths[0].name
    with pytest.raises(ValueError):
        store.put("huge", bytes(3000))
    assert SnapshotStore(tmp_path, max_bytes=1500).total == 1000  # a restart re-reads and re-caps
