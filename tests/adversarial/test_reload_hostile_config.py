"""A hostile site file handed to the running daemon (issue #11 item 9, issue #12 item 1).

A recursive YAML alias (``loop: &x [*x]``) made the loader recurse until RecursionError, which
escaped the reload path and ended the daemon: a typo-sized file took the site offline. Now a
reload that fails for any reason keeps the running config, logs one clear reason, and a signed
``reload_config`` command says so in its reply and its audit record.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_site
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.sites import radar_gauge_bus
from sim.support import free_port, wait_for
from tests.hil.test_commands_daemon import ops_key, sign

pytestmark = [pytest.mark.hil, pytest.mark.timeout(180)]

REFUSED = "reload refused, keeping the running configuration"
LOGGED = f"{REFUSED}; 1 problem(s) in"  # the daemon's line (the command plane also logs each command's outcome)
REASON = "alias *x is inside the value &x it names"


def site_text(state: Path, gauge_port: int, broker_port: int, public_key: str) -> str:
    return f"""gateway: {{id: cmd-gw, state_dir: {state}}}
buses:
{radar_gauge_bus(gauge_port)}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}}}
commands:
  issuers:
    ops: {{key: "{public_key}", allow: [ping, reload_config]}}
  allow: [ping, reload_config]
  max_clock_skew: 1s
"""


def test_hostile_reload_keeps_the_running_config(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    key, public = ops_key(tmp_path)
    gauge_port = free_port()
    config = tmp_path / "site.yaml"
    good = site_text(tmp_path / "state", gauge_port, broker.port, public)
    config.write_text(good)
    level = load_site(config).buses[0].devices[0].points[0]
    unit = SimUnit(1)
    unit.set_point(level, 100.0)
    server = SimServer([unit], port=gauge_port).start()
    gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    assert gateway.proc is not None

    def audit_of(command_id: object) -> list[dict[str, Any]]:
        return [r for r in collector.records("evidence") if r.get("kind") == "command" and r.get("id") == command_id]

    def polling_goes_on(value: float) -> None:
        unit.set_point(level, value)
        wait_for(lambda: value in collector.values("dam.level"), 20, f"{value} polled on the old config")

    try:
        wait_for(lambda: 100.0 in collector.values("dam.level"), 30, f"first reading; log:\n{gateway.log()}")
        wait_for(lambda: "replay cache" in gateway.log(), 10, "the command plane up")
        time.sleep(2.5)  # a new replay cache refuses commands issued before it began (+ the clock skew)

        # The hostile file, then SIGHUP (systemctl reload): refused, one clear reason, still running.
        config.write_text(good + "loop: &x [*x]\n")
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: REFUSED in gateway.log() or gateway.proc.poll() is not None, 20,
                 f"the reload refusal; log:\n{gateway.log()}")
        assert gateway.proc.poll() is None, f"the daemon died on a hostile reload; log:\n{gateway.log()}"
        log = gateway.log()
        assert log.count(LOGGED) == 1 and log.count(REASON) == 1, log
        assert f"{config}:{good.count(chr(10)) + 1}:11: {REASON}" in log, log  # the alias, file:line:col
        assert "Traceback" not in log, log
        polling_goes_on(101.0)

        # The same file through a signed reload_config: the reply and the audit say what happened.
        command = sign(key, "reload_config", {})
        command_id = json.loads(command)["id"]
        collector.send_command("cmd-gw", command, suffix="ops")
        wait_for(lambda: collector.reply_to(command_id) is not None or gateway.proc.poll() is not None, 20,
                 f"the reply; log:\n{gateway.log()}")
        assert gateway.proc.poll() is None, f"the daemon died on a hostile reload; log:\n{gateway.log()}"
        reply = collector.reply_to(command_id)
        assert reply is not None and reply["status"] == "failed", reply
        assert REFUSED in reply["detail"] and REASON in reply["detail"], reply
        wait_for(lambda: any(r.get("phase") == "done" for r in audit_of(command_id)), 20, "the audit record")
        done = next(r for r in audit_of(command_id) if r.get("phase") == "done")
        assert done["status"] == "failed" and REASON in done["detail"], done
        assert gateway.log().count(LOGGED) == 2 and "Traceback" not in gateway.log(), gateway.log()
        polling_goes_on(102.0)

        # A good file is still taken by the command: the daemon restarts on it.
        config.write_text(good.replace("dam.level", "dam.level_m"))
        collector.send_command("cmd-gw", sign(key, "reload_config", {}), suffix="ops")
        unit.set_point(level, 103.0)
        wait_for(lambda: 103.0 in [r["value"] for r in collector.records() if r["point"] == "dam.level_m"], 30,
                 f"the new config in use; log:\n{gateway.log()}")
    finally:
        assert gateway.stop() == 0, gateway.log()
        server.stop()
