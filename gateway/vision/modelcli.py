"""`fieldgate model check` and `fieldgate model eval`: a model measured before it is deployed.

    fieldgate model check MANIFEST
    fieldgate model eval MANIFEST --images DIR [--labels DIR] --video FILE... [--site CONFIG --camera NAME]

``check`` runs the start-time checks the daemon runs (gateway/vision/modelcheck.py). ``eval`` runs
them too, then gateway/vision/evaluate.py, and writes a report (JSON and Markdown) to keep with the
model. Only argparse at import: numpy, OpenCV and ONNX Runtime load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def add_subcommands(sub: Any) -> None:
    model = sub.add_parser("model", help="check or evaluate a detection model against its manifest")
    cmds = model.add_subparsers(dest="model_command", required=True)
    check = cmds.add_parser("check", help="the daemon's start-time checks of a manifest against its model")
    check.add_argument("manifest")
    check.add_argument("--backend", default="onnxruntime")
    check.set_defaults(handler=cmd_check)

    ev = cmds.add_parser("eval", help="precision/recall on labelled images, false alarms per hour on video")
    ev.add_argument("manifest")
    ev.add_argument("--images", type=Path, help="directory of images (jpg/png); YOLO labels in --labels")
    ev.add_argument("--labels", type=Path, help="YOLO .txt labels (default: ../labels beside an images/ "
                    "directory, else the images directory); an image without one has no object")
    ev.add_argument("--video", type=Path, nargs="+", default=[], help="unlabelled video without fire or smoke")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU for a detection to match a label (default 0.5)")
    ev.add_argument("--site", help="site config whose --camera supplies fps, confirmation, roi, exclusions")
    ev.add_argument("--camera", help="camera name in --site")
    ev.add_argument("--fps", type=float, help="inference rate on video (default: the camera's, else 2)")
    ev.add_argument("--threads", type=int, default=2, help="inference threads (as detector.threads)")
    ev.add_argument("--backend", default="onnxruntime")
    ev.add_argument("--out", type=Path, default=Path("."), help="directory for <manifest>-eval.json/.md")
    ev.set_defaults(handler=cmd_eval)


def _open(manifest: str, backend: str, threads: int) -> tuple[Any, Any, Any] | None:
    """(checked manifest, backend, check result), or None after printing the one-line reason."""
    from gateway.vision.backend import BackendError
    from gateway.vision.manifest import ManifestError
    from gateway.vision.modelcheck import open_checked

    try:
        return open_checked(manifest, backend, threads)
    except (ManifestError, BackendError) as exc:
        print(f"{manifest}: refused: {' '.join(str(exc).split())}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    opened = _open(args.manifest, args.backend, 1)
    if opened is None:
        return 1
    loaded, _backend, result = opened
    m = loaded.manifest
    classes = ", ".join(f"{i} {c.name} ({c.role})" for i, c in enumerate(m.classes or []))
    print(f"{args.manifest}: ok - layout {result.layout or 'auto (dynamic output)'}, classes {classes}, "
          f"input {m.input.width}x{m.input.height} {m.input.color} resize {m.input.resize}")
    for note in result.notes:
        print(f"{args.manifest}: note: {note}")
    for warning in result.warnings:
        print(f"{args.manifest}: warning: {warning}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.images is None and not args.video:
        print("model eval: give --images DIR and/or --video FILE", file=sys.stderr)
        return 2
    watch = _watch(args)
    if watch is None:
        return 2
    opened = _open(args.manifest, args.backend, args.threads)
    if opened is None:
        return 1
    from gateway.vision import evaluate
    from gateway.vision.detector import Detector

    loaded, backend, result = opened
    detector = Detector(loaded, backend)
    timer = evaluate.Timer()
    detector.detect(_blank(loaded.manifest))  # warm-up, not timed: the first run allocates
    report = _header(loaded, result, backend, args)
    try:
        if args.images is not None:
            labels = args.labels or evaluate.default_labels_dir(args.images)
            scores = evaluate.score_images(detector, args.images, labels, args.iou, timer)
            report["images"] = {"dir": str(args.images), "labels": str(labels), "iou": args.iou,
                                "count": len(evaluate.image_files(args.images)),
                                "classes": [s.to_json() for s in scores]}
        videos = [evaluate.score_video(detector, v, watch, timer) for v in args.video]
    except evaluate.EvalError as exc:
        print(f"model eval: {exc}", file=sys.stderr)
        return 1
    report["videos"] = [v.to_json() for v in videos]
    report["latency_ms"] = timer.to_json()
    text = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.manifest).stem
    (args.out / f"{stem}-eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{stem}-eval.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"report: {args.out / f'{stem}-eval.json'}, {args.out / f'{stem}-eval.md'}")
    return 0


def _blank(m: Any) -> Any:
    import numpy as np

    return np.zeros((m.input.height, m.input.width, 3), np.uint8)


def _watch(args: argparse.Namespace) -> Any:
    """The confirmation settings: the named camera's from --site, else a camera's defaults."""
    from gateway.vision.evaluate import Watch

    if args.site is None:
        return Watch(fps=args.fps or 2.0)
    from gateway.config import ConfigError, load_site

    try:
        site = load_site(args.site)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return None
    cameras = {c.name: c for c in site.cameras}
    cam = cameras.get(args.camera or "") if args.camera or len(cameras) != 1 else next(iter(cameras.values()))
    if cam is None:
        print(f"model eval: --camera must name one of {sorted(cameras)} in {args.site}", file=sys.stderr)
        return None
    return Watch(args.fps or cam.fps, cam.confirm, cam.roi, cam.exclusions, cam.expected_flames)


def _header(loaded: Any, result: Any, backend: Any, args: argparse.Namespace) -> dict[str, Any]:
    m = loaded.manifest
    return {
        "manifest": str(args.manifest), "model": str(loaded.model_path), "sha256": m.sha256,
        "licence": m.licence, "provenance": m.provenance, "layout": result.layout,
        "classes": [{"index": i, "name": c.name, "role": c.role} for i, c in enumerate(m.classes or [])],
        "thresholds": {"fire": m.thresholds.fire, "smoke": m.thresholds.smoke}, "nms_iou": m.nms_iou,
        "input": {"width": m.input.width, "height": m.input.height, "color": m.input.color,
                  "resize": m.input.resize},
        "backend": backend.name, "threads": args.threads, "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "warnings": list(result.warnings), "notes": list(result.notes),
    }


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render_markdown(report: dict[str, Any]) -> str:
    """The readable report: the same figures as the JSON."""
    inp = report["input"]
    lines = [f"# Model evaluation: {Path(report['model']).name}", "",
             f"- manifest `{report['manifest']}`, sha256 `{report['sha256'][:16]}...`",
             f"- licence: {report['licence']}", f"- provenance: {report['provenance']}",
             f"- layout {report['layout']}, input {inp['width']}x{inp['height']} {inp['color']} "
             f"resize {inp['resize']}, thresholds fire {report['thresholds']['fire']} smoke "
             f"{report['thresholds']['smoke']}",
             f"- {report['backend']}, threads: {report['threads']}, {report['machine']}, {report['created']}"]
    lines += [f"- warning: {w}" for w in report["warnings"]] + [f"- note: {n}" for n in report["notes"]]
    images = report.get("images")
    if images:
        lines += ["", f"## Labelled images ({images['count']}, IoU >= {images['iou']})", "",
                  "| class | role | threshold | objects | detections | TP | FP | FN | precision | recall |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {c['class']} | {c['role']} | {c['threshold']} | {c['objects']} | {c['detections']} | "
                  f"{c['tp']} | {c['fp']} | {c['fn']} | {_fmt(c['precision'])} | {_fmt(c['recall'])} |"
                  for c in images["classes"]]
    if report["videos"]:
        lines += ["", "## Video (unlabelled; on negative footage every event is a false alarm)", "",
                  "| file | duration | frames | role | detections | per hour | confirmed events | per hour |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in report["videos"]:
            roles = sorted(set(v["detections"]) | set(v["events"])) or ["-"]
            for role in roles:
                lines.append(f"| {Path(v['file']).name} | {_duration(v['seconds'])} | {v['frames']} | {role} | "
                             f"{v['detections'].get(role, 0)} | {_rate(v['detections_per_hour'].get(role, 0.0))} | "
                             f"{v['events'].get(role, 0)} | {_rate(v['events_per_hour'].get(role, 0.0))} |")
    lat = report["latency_ms"]
    if lat.get("frames"):
        lines += ["", f"## Latency per frame ({lat['frames']} frames, in-process)", "",
                  f"mean {lat['mean']} ms, p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms"]
    return "\n".join(lines) + "\n"
