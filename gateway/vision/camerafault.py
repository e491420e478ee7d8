"""A camera under the daemon, where a model that cannot be used is a configuration fault, not a crash.

A manifest or model the worker refuses (bad sha256, a class list the model contradicts, a layout its
output does not fit, a missing backend) will fail the same way however often it is retried. So
``CameraGuard`` checks the model in a throw-away worker before the camera starts (even while the
camera itself is unreachable), and on such a fault:

* logs one line (no traceback) saying which camera and why;
* raises a fault alarm upstream (``on_fault``: the daemon journals it as an ALARM ``fault`` record,
  like a broadcast fault) and a ``camera_fault_cleared`` one when the camera starts again;
* shows the camera as ``failed`` with the reason in ``CameraHealth`` (status page, health message);
* waits until the manifest or the model file it names changes (polled every ``CHANGE_POLL_S``), or
  a reload (which builds a new guard), before trying again. Nothing else retries it.

Any other failure still propagates to the daemon's supervisor, which restarts with back-off.
Only stdlib at import time: the vision modules (numpy) are imported when the camera starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.shared import Progress

if TYPE_CHECKING:
    from gateway.vision.config import VisionSettings
    from gateway.vision.events import DetectionEvent
    from gateway.vision.pipeline import CameraStats

log = logging.getLogger("fieldgate.vision")
CHANGE_POLL_S = 5.0  # how often a failed camera looks at its manifest and model file
FaultSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class CameraHealth:
    """What the status page and the health message show for one camera."""

    name: str
    state: str = "starting"  # starting | running | failed
    fault: str | None = None
    since: float = dataclasses.field(default_factory=time.time)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "fault": self.fault, "since": round(self.since, 3),
                "warnings": list(self.warnings)}


def one_line(exc: BaseException) -> str:
    """An error message on one line (a manifest's validation errors come as an indented list)."""
    return " ".join(str(exc).split())


def _fingerprint(manifest: Path) -> tuple[tuple[str, int, int] | None, ...]:
    """(path, mtime_ns, size) of the manifest and of the model file it names; None where absent."""
    paths = [manifest]
    try:
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines()[:200]:
            if line.startswith("file:"):
                paths.append(manifest.parent / line[5:].split("#")[0].strip().strip("'\""))
                break
    except OSError:
        pass
    out: list[tuple[str, int, int] | None] = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class CameraGuard:
    def __init__(
        self, cfg: VisionSettings, on_event: Callable[[DetectionEvent], Awaitable[None]], progress: Progress,
        on_fault: FaultSink, *, stats: CameraStats | None = None,
    ) -> None:
        self.cfg, self.on_event, self.progress, self.on_fault, self.stats = cfg, on_event, progress, on_fault, stats
        self.health = CameraHealth(cfg.name)
        self._faulted = False

    async def run(self) -> None:
        """Probe the model, then run the camera; on a configuration fault, report once and wait for a change."""
        from gateway.vision.manifest import ManifestError
        from gateway.vision.pipeline import run_camera
        from gateway.vision.worker import WorkerError

        manifest = Path(self.cfg.detector.model)
        while True:
            seen = _fingerprint(manifest)
            self._set("starting")
            try:
                await self._probe()
                if self._faulted:
                    self._faulted = False
                    log.info("camera %s: model accepted; starting", self.cfg.name)
                    await self.on_fault(self._fault_body("camera_fault_cleared", None))
                self._set("running")
                await run_camera(self.cfg, self.on_event, self.progress, stats=self.stats)
                return  # a lossless file ended; the supervisor decides what follows
            except (ManifestError, WorkerError) as exc:
                await self._fail(one_line(exc).removeprefix(f"detector worker for {manifest}: "))
            await self._wait_for_change(manifest, seen)

    async def _probe(self) -> None:
        """Load and check the model in a throw-away worker: the same checks the camera's worker makes."""
        from gateway.vision.worker import DetectorWorker, WorkerSpec

        d = self.cfg.detector
        probe = DetectorWorker(WorkerSpec(Path(d.model), d.backend, 1, d.graph_optimization, 1,
                                          d.inference_timeout))
        try:
            await probe.start(1)
        finally:
            probe.close()
        self.health.warnings = [str(w) for w in probe.info.get("warnings", [])]
        for note in [*probe.info.get("notes", []), *self.health.warnings]:
            log.warning("camera %s: model %s: %s", self.cfg.name, d.model, note)

    async def _fail(self, message: str) -> None:
        self._set("failed", message)
        self._faulted = True
        log.error("camera %s: model configuration fault: %s (not retried until the manifest or its model "
                  "file changes, or a reload)", self.cfg.name, message)
        await self.on_fault(self._fault_body("camera_fault", message))

    async def _wait_for_change(self, manifest: Path, seen: tuple[tuple[str, int, int] | None, ...]) -> None:
        while _fingerprint(manifest) == seen:
            self.progress.beat()  # waiting for the operator is not a hang
            await asyncio.sleep(CHANGE_POLL_S)

    def _set(self, state: str, fault: str | None = None) -> None:
        if state != self.health.state or fault != self.health.fault:
            self.health.state, self.health.fault, self.health.since = state, fault, time.time()

    def _fault_body(self, kind: str, message: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": kind, "ts": round(time.time(), 3), "camera": self.cfg.name,
                                "fault": "model_config", "manifest": str(self.cfg.detector.model)}
        if message is not None:
            body["message"] = message
        return body
