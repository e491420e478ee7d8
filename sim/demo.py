"""`make demo`: a simulated reservoir, a local broker, the real gateway, live output.

Starts mosquitto on 127.0.0.1:18830 (if installed), the Modbus simulator for
config/demo.yaml on 127.0.0.1:15020, and the gateway in this process; prints each
reading as it reaches the broker. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drivers.modbus.config import ModbusTcpBus
from drivers.mqtt.config import MqttLinkConfig
from gateway.app import Gateway
from gateway.cli import setup_logging
from gateway.config import ConfigError, SiteConfig, load_site
from gateway.shared import Reading

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "demo.yaml"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _wait_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return True
        time.sleep(0.1)
    return False


def _start_broker(host: str, port: int, workdir: Path) -> subprocess.Popen[bytes] | bool | None:
    """Our own mosquitto, True if one already listens there, None if mosquitto is not installed."""
    if _port_open(host, port):
        return True
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} {host}\nallow_anonymous true\npersistence false\n")
    # Own session: Ctrl-C in the terminal reaches the gateway, which then says "offline" to a live broker.
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    if not _wait_port(host, port, 5):
        proc.terminate()
        print(f"demo: mosquitto did not start: {proc.stderr.read().decode()[:300] if proc.stderr else ''}")
        return None
    return proc


def _show_at_broker(topic: str, body: dict[str, object]) -> None:
    records = body.get("records")
    if isinstance(records, list):
        for r in records:
            if not isinstance(r, dict):
                continue
            if "point" not in r:  # an event record: health, alarm, evidence...
                print(f"  broker ← {r.get('kind', '?')} record ({topic.rsplit('/', 1)[-1]}) seq={r.get('seq')}",
                      flush=True)
                continue
            value = r.get("value")
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"  broker ← {r['point']!s:<24} {shown:>10} {r.get('unit', '')!s:<5} "
                  f"[{r.get('q')}] seq={r.get('seq')}", flush=True)
    elif topic.endswith("/status"):
        print(f"  broker ← status: {body.get('state')}", flush=True)


async def _demo(site_path: Path, broker_ok: bool) -> None:
    site = load_site(site_path)
    gateway = Gateway(site)
    link = _mqtt_link(site)
    if not broker_ok:
        async def show_journalled(reading: Reading) -> None:
            print(f"  journal ← {reading.point:<24} {reading.value!s:>10} {reading.unit:<5} "
                  f"[{reading.quality.value}]", flush=True)

        gateway.observers.append(show_journalled)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tg:
        watcher = None
        if broker_ok:
            from drivers.mqtt.monitor import watch

            watcher = tg.create_task(watch(link.host, link.port, f"{link.topic_prefix}/#", _show_at_broker))
        await gateway.run(stop)
        if watcher is not None:
            await asyncio.sleep(0.5)
            watcher.cancel()


def _mqtt_link(site: SiteConfig) -> MqttLinkConfig:
    return next(link for link in site.links if isinstance(link, MqttLinkConfig))


def main() -> int:
    setup_logging(False)
    try:
        site = load_site(CONFIG)
    except ConfigError as exc:
        print("\n".join(exc.lines))
        return 1
    link = _mqtt_link(site)
    bus = site.buses[0]
    with tempfile.TemporaryDirectory(prefix="fieldgate-demo-") as tmp:
        broker = _start_broker(link.host, link.port, Path(tmp))
        if broker is None:
            print("demo: mosquitto is not installed, so nothing is published.\n"
                  "      Install it with:  sudo apt-get install mosquitto\n"
                  "      The demo still runs: readings are journalled locally and shown below.", flush=True)
        sim = subprocess.Popen([sys.executable, "-m", "sim.modbus", str(CONFIG), "--animate"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            if not isinstance(bus, ModbusTcpBus) or not _wait_port(bus.host, bus.port, 10):
                print("demo: the Modbus simulator did not start")
                return 1
            where = f"on {link.host}:{link.port}" if broker else "absent"
            print(f"demo: simulated reservoir on {bus.host}:{bus.port}, broker {where}; Ctrl-C to stop", flush=True)
            if site.status is not None:
                print(f"demo: status page on http://{site.status.listen}/", flush=True)
            asyncio.run(_demo(CONFIG, broker is not None))
        finally:
            sim.terminate()
            if isinstance(broker, subprocess.Popen):
                broker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                sim.wait(5)
    print("demo: stopped cleanly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
