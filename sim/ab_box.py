"""A box with an A/B install on this machine, run as its systemd unit would run it (tests, bench).

``build_release`` makes a fieldgate wheel of this tree under another version (optionally one whose daemon
cannot start). ``ABBox`` lays out what the installer does, under a prefix: ``<prefix>/venv`` (the installed
release) and the A/B root ``<prefix>/releases`` with ``current -> ../venv``; and it runs the unit's loop:
the boot check from the stable venv (``ExecStartPre``), then ``<root>/current/bin/fieldgate run SITE``,
started again after a failure exit (``Restart=on-failure``) until stopped.

The releases' virtualenvs see this environment's dependencies through a ``fieldgate-deps.pth`` (the update
carries such links into the new slot, gateway/fleet/updates.py), so a test installs only fieldgate itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TREE = ("pyproject.toml", "README.md", "gateway", "drivers", "sim", "centre")
BROKEN_DAEMON = 'raise RuntimeError("this release cannot start (a test release)")\n'


UPDATE_ALLOW = "[ping, status, config_chunk, config_apply, update_chunk, update_apply]"


def update_site(gw: str, state_dir: Path, broker_port: int, issuer: str, update_key: str, ab_root: Path, *,
                name: str = "v1", archive_port: int | None = None) -> str:
    """A site that takes roll-outs and updates over MQTT (``archive_port``: a second uplink)."""
    archive = "" if archive_port is None else (
        f"  - {{type: mqtt, name: archive, host: 127.0.0.1, port: {archive_port}, reconnect_min: 0.2, "
        "reconnect_max: 1}\n")
    return f"""
gateway: {{id: {gw}, name: {name}, state_dir: {state_dir}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
{archive}commands:
  issuers:
    ops: {{key: "{issuer}", allow: {UPDATE_ALLOW}}}
  allow: {UPDATE_ALLOW}
  max_clock_skew: 1s
fleet:
  update_keys: {{release: "{update_key}"}}
  ab_root: {ab_root}
"""


def clean_env() -> dict[str, str]:
    """What systemd gives the unit: no import path of this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def copy_sources(work: Path) -> Path:
    """What a wheel of this checkout is built from, copied to ``work`` (no caches, no build leftovers)."""
    work.mkdir(parents=True)
    for name in _TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, work / name)
    return work


def build_release(out_dir: Path, version: str, *, broken: bool = False) -> Path:
    """A wheel of this tree as ``version``; ``broken``: `fieldgate validate` works, `fieldgate run` raises."""
    work = out_dir / f"src-{version}"
    shutil.rmtree(work, ignore_errors=True)
    copy_sources(work)
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
    if broken:
        daemon = work / "gateway" / "daemon.py"
        daemon.write_text(BROKEN_DAEMON + daemon.read_text())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out_dir), str(work)], check=True, capture_output=True, timeout=300)
    shutil.rmtree(work)
    return next(out_dir.glob(f"fieldgate-{version}-*.whl"))


class ABBox:
    def __init__(self, root: Path, state_dir: Path, site: Path, log: Path) -> None:
        self.root, self.state_dir, self.site, self.log_path = root, state_dir, site, log
        self.starts: list[tuple[str, int | None]] = []  # (slot started, its exit code)
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def install(self, wheel: Path) -> ABBox:
        """The installer's part: ``<prefix>/venv`` with this release, ``<prefix>/releases/current -> ../venv``."""
        venv = self.venv
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
        (site / "fieldgate-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # This environment's pip, seen through the .pth, installs into the new venv (seconds faster than ensurepip).
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--force-reinstall", "--disable-pip-version-check", str(wheel)],
                       check=True, capture_output=True, timeout=300, env=clean_env())
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "current").symlink_to("../venv")
        return self

    @property
    def venv(self) -> Path:
        return self.root.parent / "venv"

    def slot(self) -> str:
        return os.readlink(self.root / "current")

    def start(self) -> ABBox:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._unit, daemon=True)
        self._thread.start()
        return self

    def _unit(self) -> None:
        with self.log_path.open("ab") as log:
            while not self._stopping.is_set():
                subprocess.run([str(self.venv / "bin" / "python"), "-m", "gateway.fleet.boot",
                                "--state-dir", str(self.state_dir), "--root", str(self.root)],
                               stdout=log, stderr=log, env=clean_env(), timeout=60, check=False, cwd=self.root)
                slot = self.slot()
                self._proc = subprocess.Popen([str(self.root / "current" / "bin" / "fieldgate"), "run", str(self.site)],
                                              stdout=log, stderr=log, env={**clean_env(), "PYTHONUNBUFFERED": "1"},
                                              cwd=self.root)
                code = self._proc.wait()
                self.starts.append((slot, code))
                if code == 0:
                    return  # Restart=on-failure
                time.sleep(0.3)

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def up(self, marker: str = "county: connected") -> None:
        """Start and wait for the uplink, and past the replay cache's start (+ a clock skew of 1 s)."""
        seen = self.log().count(marker)
        self.start()
        deadline = time.monotonic() + 30
        while self.log().count(marker) <= seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the box did not come up; log:\n{self.log()}")
            time.sleep(0.1)
        time.sleep(2.2)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""
