"""The demo site (config/demo.yaml) on free ports and a temporary state folder, for tests of the real thing."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def demo_copy(tmp: Path, *, modbus_port: int, broker_port: int, status_port: int, extra: str = "") -> Path:
    text = (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8")
    for old, new in (("port: 15020", f"port: {modbus_port}"), ("port: 18830", f"port: {broker_port}"),
                     ("listen: 127.0.0.1:18080", f"listen: 127.0.0.1:{status_port}"),
                     ("state_dir: ./demo-state", f"state_dir: {tmp / 'state'}")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "demo.yaml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0
