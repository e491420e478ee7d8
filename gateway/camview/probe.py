"""Run a camera's detector once on one frame, in a child process: ``python -m gateway.camview.probe``.

The daemon's own inference runs in a worker process so that a hung or crashing model cannot take the
gateway down; a technician's test on the held frame gets the same isolation (and the daemon never
imports the inference library). Input: the manifest path and a JPEG path; output: one JSON line with
every detection the model makes on it, whatever its score, with the manifest's thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.vision.config import VisionSettings
from gateway.vision.geometry import box_in_polygon

PROBE_TIMEOUT_S = 60.0
MAX_OUTPUT_BYTES = 1024 * 1024
PROBE_FLOOR = 0.05  # scores reported down to this, each with its class's real threshold beside it


def verdict(camera: VisionSettings, box: tuple[float, float, float, float], role: str, score: float,
            threshold: float, size: tuple[int, int]) -> str:
    """What the pipeline's gates would make of one detection (before temporal confirmation)."""
    w, h = size
    if score < threshold:
        return "below_threshold"
    if camera.roi and not any(box_in_polygon(box, p.points, w, h) for p in camera.roi):
        return "outside_roi"
    if any(box_in_polygon(box, p.points, w, h) for p in camera.exclusions):
        return "excluded"
    if role == "fire" and any(box_in_polygon(box, z.points, w, h) for z in camera.expected_flames):
        return "expected_flame"
    return "counts"


async def run_probe(camera: VisionSettings, jpeg: Path, size: tuple[int, int]) -> dict[str, Any]:
    """The detector on ``jpeg`` in a child process, each detection with its verdict. Raises ValueError."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.camview.probe", str(camera.detector.model), str(jpeg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ValueError(f"the detector took longer than {PROBE_TIMEOUT_S:.0f} s") from None
    if process.returncode != 0:
        raise ValueError(f"the detector failed: {err.decode(errors='replace')[-500:].strip()}")
    result: dict[str, Any] = json.loads(out[:MAX_OUTPUT_BYTES])
    for d in result["detections"]:
        d["verdict"] = verdict(camera, tuple(d["box"]), d["role"], d["score"], d["threshold"], size)
    result["counts"] = sum(1 for d in result["detections"] if d["verdict"] == "counts")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__ or None)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("jpeg", type=Path)
    args = parser.parse_args(argv)
    import time

    import cv2
    import numpy as np

    from gateway.vision.backend import open_backend
    from gateway.vision.detector import Detector
    from gateway.vision.manifest import load_manifest

    image = cv2.imread(str(args.jpeg), cv2.IMREAD_COLOR)
    if image is None:
        print(f"{args.jpeg}: not a readable image", file=sys.stderr)
        return 1
    loaded = load_manifest(args.manifest)
    detector = Detector(loaded, open_backend("onnxruntime", loaded.model_path, 1, "all"))
    # Every detection down to a low floor, so "not quite" shows too; each keeps its class threshold.
    thresholds = dict(zip(detector.roles, detector.conf.tolist(), strict=True))
    detector.conf[:] = PROBE_FLOOR
    detector._min_conf = PROBE_FLOOR
    started = time.monotonic()
    found = detector.detect(np.asarray(image, dtype=np.uint8))
    took = time.monotonic() - started
    detections = [{"box": [round(float(v), 1) for v in box], "role": role, "score": round(float(s), 3),
                   "threshold": round(float(thresholds[role]), 3)}
                  for box, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
                  for role in [detector.roles[int(c)]]]
    print(json.dumps({"model": str(loaded.path), "infer_s": round(took, 3), "detections": detections}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
