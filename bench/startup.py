"""Start-up benchmark: `fieldgate run` on the demo site, from exec to READY=1 and to the first reading
at the broker; then the daemon's idle CPU and RSS.

Uses config/demo.yaml with its ports moved to free ones (a copy in a temporary directory), the
demo's simulator (``python -m sim.modbus COPY --animate``) and mosquitto on loopback.
READY=1 is received on a real ``$NOTIFY_SOCKET`` datagram socket, as systemd would receive it.
Each run starts from an empty state directory. Prints JSON.

Byte code, as on the box: the .deb byte-compiles at install (deploy/debian/postinst) and the unit runs with
``PYTHONDONTWRITEBYTECODE=1``, so a box never compiles a module at start. A checkout here has no byte code
for our modules (this machine's environment sets ``PYTHONDONTWRITEBYTECODE=1`` too, and an editable install
or a ``git archive`` tree has none), which costs ~0.5 MB of RSS and ~0.15 s of start-up that a box does not
pay. So by default one unmeasured warm-up start writes the byte code of every module the daemon imports
(ours, the standard library's, the venv's) to a temporary ``PYTHONPYCACHEPREFIX``, and the measured starts
read it from there with ``PYTHONDONTWRITEBYTECODE=1``. ``--from-source`` measures as before (every module
compiled at every start; the figures in bench/RESULTS.md before issue 18's fourth memory pass).

The daemon runs with the ``Environment=`` of this checkout's systemd unit (deploy/raspberrypi/fieldgate.service:
``PYTHONOPTIMIZE=2`` since issue 18's fifth pass), as the box's service does.

    .venv/bin/python bench/startup.py --runs 5 --idle-seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.broker import Broker  # noqa: E402
from sim.gateway_process import unit_environment  # noqa: E402
from sim.platform import Platform  # noqa: E402
from sim.support import free_port, listening, wait_for  # noqa: E402


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


class NotifyListener:
    """A systemd-like NOTIFY_SOCKET: records when each assignment first arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.first: dict[str, float] = {}
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.time()
            text = data.decode("utf-8", "replace")
            self.messages.append(text)
            for line in text.splitlines():
                self.first.setdefault(line, arrived)

    def reset(self) -> None:
        self.first.clear()
        self.messages.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def demo_copy(source: Path, tmp: Path, modbus_port: int, broker_port: int) -> Path:
    site = yaml.safe_load(source.read_text())
    site["gateway"]["state_dir"] = str(tmp / "state")
    for bus in site["buses"]:
        if bus.get("type") == "modbus_tcp":
            bus["port"] = modbus_port
    for link in site["links"]:
        if link.get("type") == "mqtt":
            link["port"] = broker_port
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def start_gateway(config: Path, notify: Path, log: Path,
                  byte_code: dict[str, str | None]) -> tuple[subprocess.Popen[bytes], float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", NOTIFY_SOCKET=str(notify))
    env.update(unit_environment(ROOT / "deploy" / "raspberrypi" / "fieldgate.service"))
    env.pop("WATCHDOG_USEC", None)
    for name, value in byte_code.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    handle = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", str(config)], cwd=ROOT, env=env,
                            stdout=handle, stderr=handle)
    return proc, started


def start_fresh(config: Path, notify: NotifyListener, collector: Platform, name: str,
                byte_code: dict[str, str | None]) -> tuple[subprocess.Popen[bytes], float]:
    """A start from an empty state directory (beside the config), nothing left of the previous run's messages."""
    notify.reset()
    collector.clear()
    state = config.parent / "state"
    if state.exists():
        subprocess.run(["rm", "-rf", str(state)], check=True)
    return start_gateway(config, notify.path, config.parent / f"gateway-{name}.log", byte_code)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def first_arrival(collector: Platform, started: float) -> float | None:
    """When the first message carrying a reading sampled by this run reached the subscriber."""
    arrivals = [m.arrived for m in collector.snapshot()
                if isinstance(m.body, dict) and any(isinstance(r, dict) and r.get("ts", 0) >= started
                                                    for r in m.body.get("records", []))]
    return min(arrivals, default=None)


def reach_first_reading(notify: NotifyListener, collector: Platform, started: float) -> tuple[float, float]:
    """Seconds from start to READY=1 and to the first reading at the broker."""
    wait_for(lambda: "READY=1" in notify.first, 60, "READY=1 on NOTIFY_SOCKET")
    wait_for(lambda: first_arrival(collector, started) is not None, 60, "first reading at the broker")
    first = first_arrival(collector, started)
    assert first is not None
    return notify.first["READY=1"] - started, first - started


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time")
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="wait before measuring idle")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU measurement window")
    parser.add_argument("--from-source", action="store_true",
                        help="no byte code: every start compiles every module (see the docstring)")
    parser.add_argument("--site", type=Path, default=ROOT / "config" / "demo.yaml",
                        help="site to start (one modbus_tcp endpoint, MQTT links); e.g. an older demo.yaml, "
                             "to compare two trees on the same workload")
    parser.add_argument("--smaps", type=Path, help="also copy the idle daemon's /proc/PID/smaps here (where the "
                                                   "resident memory sits, mapping by mapping)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fg-bench-startup-"))
    broker = Broker(tmp / "broker").start()
    modbus_port = free_port()
    config = demo_copy(args.site, tmp, modbus_port, broker.port)
    sim_log = open(tmp / "sim.log", "ab")  # noqa: SIM115 - closed at the end
    sim = subprocess.Popen([sys.executable, "-m", "sim.modbus", str(config), "--animate"],
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=sim_log, stderr=sim_log)
    notify = NotifyListener(tmp / "notify.sock")
    collector = Platform(broker.port)
    ready_s: list[float] = []
    first_reading_s: list[float] = []
    result: dict[str, Any] = {}
    proc: subprocess.Popen[bytes] | None = None
    prefix = str(tmp / "pycache")
    measured: dict[str, str | None] = {"PYTHONPYCACHEPREFIX": None if args.from_source else prefix,
                                       "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        wait_for(lambda: listening(modbus_port), 20, "simulator listening")
        if not args.from_source:  # the warm-up: writes the byte code, not measured
            warm_up, started = start_fresh(config, notify, collector, "warm-up",
                                           {"PYTHONPYCACHEPREFIX": prefix, "PYTHONDONTWRITEBYTECODE": None})
            try:
                reach_first_reading(notify, collector, started)
                time.sleep(2)  # what the daemon imports once the links are up
            finally:
                stop(warm_up)
        for run in range(args.runs):
            proc, started = start_fresh(config, notify, collector, str(run), measured)
            ready, first = reach_first_reading(notify, collector, started)
            ready_s.append(ready)
            first_reading_s.append(first)
            if run < args.runs - 1:
                stop(proc)
                proc = None
        assert proc is not None
        time.sleep(args.settle_seconds)
        cpu0, t0 = proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        cpu1, t1 = proc_cpu_seconds(proc.pid), time.monotonic()
        memory = proc_memory_mb(proc.pid)
        if args.smaps:
            args.smaps.write_text(Path(f"/proc/{proc.pid}/smaps").read_text())
        points = sum(len(d["points"]) for b in yaml.safe_load(config.read_text())["buses"] for d in b["devices"])
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU, Python {platform.python_version()}",
            "site": str(args.site),
            "byte_code": "from source" if args.from_source else "compiled by a warm-up start, as on the box",
            "points": points,
            "runs": args.runs,
            "start_to_ready_s": summary(ready_s),
            "start_to_first_reading_at_broker_s": summary(first_reading_s),
            "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "idle_window_s": args.idle_seconds,
            "rss_mb": round(memory.get("VmRSS", float("nan")), 1),
            "peak_rss_mb": round(memory.get("VmHWM", float("nan")), 1),
        }
    finally:
        if proc is not None:
            stop(proc)
        collector.close()
        notify.close()
        sim.terminate()
        sim.wait(10)
        sim_log.close()
        broker.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
