#!/usr/bin/env python3
"""Vision benchmarks; prints JSON.

* pipeline frames/s (shared-memory worker: copy, letterbox, infer, decode, NMS) vs bare
  onnxruntime ``run()`` on the same model and thread count;
* end-to-end frames/s of run_camera on a lossless video file (adds video decode + temporal stage);
* capture -> confirmed-event latency on a flame video played in real time;
* worker RSS.
Models: the shipped baseline and a YOLOv8n-sized random-weight model built at run time.

    python bench/vision.py [--threads 2] [--seconds 5] [--size 320]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "models" / "baseline-fire-smoke.yaml"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def yolov8n_manifest(tmp: Path, size: int) -> Path:
    from drivers.onnx.synthetic import yolov8n_sized_model

    model = yolov8n_sized_model(tmp / "yolov8n_sized.onnx", size=size)
    classes = [{"name": "fire", "role": "fire"}, {"name": "smoke", "role": "smoke"}] + [
        {"name": f"class{i}", "role": "ignore"} for i in range(2, 80)]
    (tmp / "yolov8n_sized.yaml").write_text(json.dumps({
        "file": model.name, "sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "layout": "yolov8",
        "input": {"width": size, "height": size}, "classes": classes,
        "licence": "generated", "provenance": "bench/vision.py random weights"}))
    return tmp / "yolov8n_sized.yaml"


def bare_fps(manifest: Path, threads: int, seconds: float) -> float:
    from drivers.onnx.backend import OnnxBackend
    from gateway.vision.manifest import load_manifest

    loaded = load_manifest(manifest)
    b = OnnxBackend(loaded.model_path, threads=threads)
    m = loaded.manifest.input
    blob = np.random.default_rng(0).random((1, 3, m.height, m.width), dtype=np.float32)
    b.run(blob)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b.run(blob)
        n += 1
    return n / (time.perf_counter() - t0)


async def worker_fps(manifest: Path, threads: int, seconds: float, frame: np.ndarray) -> tuple[float, int]:
    from gateway.vision.worker import DetectorWorker, WorkerSpec

    w = DetectorWorker(WorkerSpec(manifest, threads=threads, slots=2))
    await w.start(frame.nbytes)
    try:
        w.submit(frame)
        await w.result()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            while w.free_slots:
                w.submit(frame)
            await w.result()
            n += 1
        fps = n / (time.perf_counter() - t0)
        while w.inflight:
            await w.result()
        assert w.pid is not None
        return fps, rss_kib(w.pid)
    finally:
        w.close()


def camera_cfg(video: Path, manifest: Path, threads: int, fps: float, pacing: str, snaps: Path) -> object:
    from drivers.camera.config import CameraConfig

    return CameraConfig.model_validate({
        "type": "camera", "name": "bench", "source": str(video), "fps": fps, "file_pacing": pacing,
        "detector": {"model": str(manifest), "threads": threads},
        "snapshots": {"dir": str(snaps), "max_bytes": 10_000_000}})


async def end_to_end(video: Path, manifest: Path, threads: int, tmp: Path) -> dict[str, float]:
    from gateway.shared import NullProgress
    from gateway.vision.pipeline import CameraStats, run_camera

    stats = CameraStats()
    cfg = camera_cfg(video, manifest, threads, 60, "lossless", tmp / "snaps_e2e")

    async def sink(ev: object) -> None:
        return None

    t0 = time.perf_counter()
    await run_camera(cfg, sink, NullProgress(), stats=stats)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    return {"frames": stats.inferences, "wall_s_incl_worker_start": round(wall, 2),
            "fps_incl_start": round(stats.inferences / wall, 1)}


async def latency(video: Path, manifest: Path, threads: int, tmp: Path) -> dict[str, float]:
    from gateway.shared import NullProgress
    from gateway.vision.events import DetectionEvent
    from gateway.vision.pipeline import run_camera

    cfg = camera_cfg(video, manifest, threads, 5, "realtime", tmp / "snaps_lat")
    got: list[tuple[float, DetectionEvent]] = []
    first = asyncio.Event()
    started = time.time()

    async def sink(ev: DetectionEvent) -> None:
        got.append((time.time(), ev))
        first.set()

    task = asyncio.create_task(run_camera(cfg, sink, NullProgress()))  # type: ignore[arg-type]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(first.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if not got:
        return {"confirmed": 0}
    at, ev = got[0]
    return {"confirmed": 1, "confirming_frame_to_event_ms": round((at - ev.t) * 1000, 1),
            "first_flame_frame_to_event_s": round(at - started, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=320, help="input size of the YOLOv8n-sized model")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests" / "hil"))
    import test_vision_video as videos  # type: ignore[import-not-found]  # the tests' flame generator

    out: dict[str, object] = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        flame_video = videos.write_video(tmp / "flame.avi", videos.flame)
        frame = np.ascontiguousarray(np.tile(videos.flame(0, np.random.default_rng(1)), (4, 4, 1)))  # 640x480
        for name, manifest in (("baseline", BASELINE), ("yolov8n_sized", yolov8n_manifest(tmp, args.size))):
            bare = bare_fps(manifest, args.threads, args.seconds)
            piped, rss = asyncio.run(worker_fps(manifest, args.threads, args.seconds, frame))
            out[name] = {
                "bare_run_fps": round(bare, 1), "pipeline_fps": round(piped, 1),
                "ratio": round(piped / bare, 3), "frame": "640x480", "worker_rss_mib": round(rss / 1024, 1),
                "end_to_end_lossless_file": asyncio.run(end_to_end(flame_video, manifest, args.threads, tmp)),
            }
        out["baseline"]["latency_realtime_flame"] = asyncio.run(  # type: ignore[index]
            latency(flame_video, BASELINE, args.threads, tmp))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
