"""A camera whose model manifest is wrong is a configuration fault (issue 21): one clear line, one fault
alarm in the journal, the camera marked failed in the status snapshot and the health message, and no
retry until the manifest or model file changes; a fixed file clears the fault and the camera starts."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")

from drivers.onnx.synthetic import yolov8n_sized_model
from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.health import health_message
from gateway.shared import RecordClass
from gateway.status.metrics import render_metrics
from gateway.status.summary import render_summary
from gateway.vision import camerafault
from gateway.vision.manifest import sha256_file


def cameras(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in gateway.snapshot()["cameras"]}


def test_a_bad_manifest_is_one_fault_alarm_and_waits_for_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camerafault, "CHANGE_POLL_S", 0.2)
    # The YOLOv8 stand-in trained-as {0: smoke, 1: fire}, and a manifest in the README's old order.
    model = yolov8n_sized_model(tmp_path / "smoke-fire.onnx", size=64, names=["smoke", "fire"])
    wrong_order = (f"file: {model.name}\nsha256: '{sha256_file(model)}'\nlayout: yolov8\n"
                   "input: {width: 64, height: 64}\nclasses: [{name: fire, role: fire}, {name: smoke, role: smoke}]\n"
                   "licence: test\nprovenance: test\n")
    manifest = tmp_path / "model.yaml"
    manifest.write_text(wrong_order)
    site = load_site_text(f"""
gateway: {{id: gw, state_dir: {tmp_path / 'state'}}}
cameras:
  - type: camera
    name: ridge
    source: rtsp://127.0.0.1:9/nothing-listens
    detector: {{model: {manifest}, threads: 1}}
    snapshots: {{dir: {tmp_path / 'snaps'}}}
""", "site.yaml")
    gateway = Gateway(site)
    seen: dict[str, Any] = {}
    committed: list[tuple[RecordClass, dict[str, Any]]] = []  # what went into the journal, as it went in
    append_now = gateway.journal.append_now

    async def recording(cls: RecordClass, record: Any) -> int:
        committed.append((cls, record.to_json()))
        return await append_now(cls, record)

    gateway.journal.append_now = recording  # type: ignore[method-assign]

    async def until(predicate: Any, within: float) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; cameras: {cameras(gateway)}"
            await asyncio.sleep(0.1)

    def errors_about_the_camera() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "ridge" in r.getMessage() and r.levelno >= logging.ERROR]

    async def scenario() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.sleep(5.0)  # the old supervisor retried after 0.5-1 s, then 1-2 s, with tracebacks
            errors = errors_about_the_camera()
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
            assert "the model's names are ['smoke', 'fire']" in errors[0].getMessage()
            assert "configuration fault" in errors[0].getMessage()
            seen["failed"] = cameras(gateway)["ridge"]
            seen["health"] = health_message(gateway.snapshot(), tmp_path)
            seen["summary"] = render_summary(gateway.snapshot())
            seen["metrics"] = render_metrics(gateway.snapshot())
            manifest.write_text(wrong_order + "classes_by: name\n")  # the operator's fix
            await until(lambda: cameras(gateway)["ridge"]["state"] == "running", 60)
        finally:
            stop.set()
            await asyncio.wait_for(run, 60)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert len(errors_about_the_camera()) == 1
    assert seen["failed"]["state"] == "failed" and "classes_by: name" in seen["failed"]["fault"]
    assert seen["health"]["cameras"] == {"ridge": 0}
    assert "camera ridge: FAILED: ModelCheckError: model manifest" in seen["summary"]
    assert 'fieldgate_camera_failed{camera="ridge"} 1' in seen["metrics"]
    faults = [body for cls, body in committed if cls is RecordClass.ALARM and body["kind"] == "fault"]
    assert all(f["key"] == "ridge" for f in faults)
    assert [f["type"] for f in faults] == ["camera_fault", "camera_fault_cleared"]
    assert faults[0]["fault"] == "model_config" and faults[0]["manifest"] == str(manifest)
