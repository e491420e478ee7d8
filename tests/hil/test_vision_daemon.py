"""Vision through the real daemon: a synthetic flame video raises a confirmed fire event, the
tower's detection rule raises its alarm, and the JPEG snapshot reaches the broker (as BULK chunks)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.platform import Platform
from sim.support import wait_for
from tests.hil.test_vision_video import BASELINE, flame, write_video

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


def test_flame_video_to_broker_with_snapshot(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    video = write_video(tmp_path / "flame.avi", flame)
    config = tmp_path / "site.yaml"
    config.write_text(f"""
gateway: {{id: tower-test, state_dir: {tmp_path / 'state'}}}
cameras:
  - type: camera
    name: valley
    source: {video}
    fps: 5
    detector: {{model: {BASELINE}, threads: 1}}
    snapshots: {{dir: {tmp_path / 'snaps'}, max_bytes: 5000000}}
rules:
  - {{type: detection, id: valley.fire, point: valley.fire, min_confidence: 0.3, severity: extreme}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker.port}}}
""")
    gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        wait_for(lambda: any(r.get("kind") == "detection" and r.get("role") == "fire" and r.get("camera") == "valley"
                             for r in collector.records("alarm")), 60, f"fire event; log:\n{gateway.log()}")
        wait_for(lambda: any(r.get("rule") == "valley.fire" and r.get("transition") == "raised"
                             for r in collector.records("alarm")), 30, "the detection rule's alarm")
        event = next(r for r in collector.records("alarm") if r.get("kind") == "detection")

        def snapshot_chunks() -> list[dict[str, Any]]:
            return [r for r in collector.records("bulk") if r.get("kind") == "snapshot"
                    and r.get("event") == event["id"]]

        wait_for(lambda: bool(snapshot_chunks()) and len(snapshot_chunks()) >= int(snapshot_chunks()[0]["chunks"]),
                 30, "every snapshot chunk at the broker")
        chunks = sorted(snapshot_chunks(), key=lambda r: int(r["chunk"]))
        jpeg = b"".join(base64.b64decode(str(c["jpeg_b64"])) for c in chunks)
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
        assert len(jpeg) == chunks[0]["bytes"]
    finally:
        assert gateway.stop() == 0, gateway.log()
