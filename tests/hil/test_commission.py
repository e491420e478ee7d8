"""`fieldgate commission` on the demo site: the simulated reservoir and beacon board, a broker, a Test
broadcast through the interlock with read-back, the report (HTML, PDF) and its record in the audit chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.alerts.audit import verify_chain
from sim.broker import Broker
from sim.support import free_port, wait_for
from tests.hil.demo_site import demo_copy, port_open

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]


def test_commission_the_demo_site_with_a_test_broadcast(tmp_path: Path, broker: Broker) -> None:
    modbus_port = free_port()
    site = demo_copy(tmp_path, modbus_port=modbus_port, broker_port=broker.port, status_port=free_port())
    sim = subprocess.Popen([sys.executable, "-m", "sim.modbus", str(site), "--animate"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(modbus_port), 20, "the Modbus simulator listening")
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "--lang", "zh-CN", "commission", str(site), "--operator", "demo",
             "--key", str(ROOT / "config" / "demo-operator.key"), "--wait", "20"],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
    finally:
        sim.terminate()
        sim.wait(10)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "通过       broadcast: beacon_yard (activate): 测试 activate：正常" in out, out
    assert "beacon_yard (selftest)" in out and "links: county: 已连接" in out
    reports = sorted((tmp_path / "state" / "commission").glob("commission-demo-reservoir-*"))
    assert [p.suffix for p in reports] == [".html", ".pdf"], reports
    assert "调试验收报告" in reports[0].read_text(encoding="utf-8")
    assert reports[1].read_bytes().startswith(b"%PDF-")

    audit = tmp_path / "state" / "audit" / "broadcast.log"
    assert verify_chain(audit).ok
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    decision = next(r["data"] for r in records if r["kind"] == "decision")
    assert decision["accepted"] and decision["alert"]["status"] == "Test" and decision["signers"] == ["demo"]
    assert decision["outputs"] == ["beacon_yard"]
    activated = [r["data"] for r in records if r["kind"] == "output" and r["data"].get("action") == "activate"]
    assert activated and activated[0]["ok"] and activated[0]["detail"]["readback"] is True
    (commissioned,) = [r["data"] for r in records if r["kind"] == "commission"]
    assert commissioned["passed"] and commissioned["report"] == reports[0].name
    assert commissioned["html_sha256"] and commissioned["config_sha256"]


def test_commission_refuses_while_the_daemon_serves_its_page(tmp_path: Path, broker: Broker) -> None:
    import socket

    status_port = free_port()
    site = demo_copy(tmp_path, modbus_port=free_port(), broker_port=broker.port, status_port=status_port)
    with socket.create_server(("127.0.0.1", status_port)):
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "--lang", "en", "commission", str(site)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "the daemon is running" in done.stderr
