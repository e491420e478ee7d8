"""`write_point` never reaches a broadcast relay board.

Before: a siren coil listed in ``commands.write_points`` (docs/commands.md used ``siren.east.coil``
as its example) was switched on by a signed ``write_point`` with no interlock decision, no
broadcast audit record and no maximum activation.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.commands import CommandFailed
from gateway.config import ConfigError, load_site_text
from gateway.control import GatewayControl

BUS_BOARD = """\
gateway: {id: gw-1, state_dir: /tmp/x}
buses:
  - type: modbus_rtu
    name: line1
    port: /dev/ttyUSB1
    devices:
      - {name: radar, unit_id: 1, points: [{id: dam.level, address: 0, type: float32}]}
      - name: relays
        unit_id: 2
        points:
          - {id: siren.coil, table: coil, address: 0, type: bool}
          - {id: siren.auto_off, table: holding, address: 5}
          - {id: relays.all, table: holding, address: 9}
broadcast:
  outputs:
    siren: {type: modbus_relay_siren, board: {transport: bus, bus: line1, unit_id: 2}, coil: 0,
            board_auto_off: {register_address: 5, time_unit: 1}}
  zones: {dam: {outputs: [siren]}}
  clips: {ex: {file: /c/ex.wav}, test: {file: /c/test.wav}, clear: {file: /c/clear.wav}}
  patterns: {flood: {steps: [[2, 1]]}, drill: {steps: [[1, 2]]}}
  status_patterns: {actual: flood, exercise: drill}
  announce: {exercise: ex, test: test}
  all_clear_clip: clear
commands:
  write_points: [dam.level, WRITE]
"""

TCP_BOARD = """\
gateway: {id: gw-1, state_dir: /tmp/x}
buses:
  - type: modbus_tcp
    name: boards
    host: localhost
    port: 1502
    devices:
      - {name: relays, unit_id: 3, points: [{id: east.coil, table: coil, address: 4, type: bool}]}
broadcast:
  outputs:
    siren: {type: modbus_relay_siren, board: {host: 127.0.0.1, port: 1502, device_id: 3}, coil: 4}
  zones: {dam: {outputs: [siren]}}
  clips: {ex: {file: /c/ex.wav}, test: {file: /c/test.wav}, clear: {file: /c/clear.wav}}
  patterns: {flood: {steps: [[2, 1]]}, drill: {steps: [[1, 2]]}}
  status_patterns: {actual: flood, exercise: drill}
  announce: {exercise: ex, test: test}
  all_clear_clip: clear
commands:
  write_points: [east.coil]
"""


@pytest.mark.parametrize("point", ["siren.coil", "siren.auto_off", "relays.all"])
def test_a_bus_relay_board_point_is_refused_at_its_position(point: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site_text(BUS_BOARD.replace("WRITE", point), "site.yaml")
    line = 25  # the write_points line; column 29 is the second entry
    assert caught.value.lines == [
        f"site.yaml:{line}:29: commands.write_points[1]: '{point}' is on the relay board of broadcast output(s) "
        "siren; a public-alarm output is switched only through the interlock (trigger_broadcast with the "
        "operators' signatures, or a rule in broadcast.automatic)"]


def test_a_board_with_its_own_master_polled_by_a_tcp_bus_is_refused_too() -> None:
    with pytest.raises(ConfigError) as caught:
        load_site_text(TCP_BOARD, "site.yaml")
    assert len(caught.value.lines) == 1 and "'east.coil' is on the relay board" in caught.value.lines[0]


def test_other_points_stay_writable() -> None:
    site = load_site_text(BUS_BOARD.replace(", WRITE", ""), "site.yaml")
    assert site.commands.write_points == ["dam.level"]


def test_the_gateway_refuses_at_run_time_what_the_loader_would_refuse() -> None:
    site = load_site_text(BUS_BOARD.replace(", WRITE", ""), "site.yaml")
    writes: list[Any] = []

    class Bus:
        name = "line1"
        writable = True

        def points(self) -> list[Any]:
            return [SimpleNamespace(id="siren.coil"), SimpleNamespace(id="dam.level")]

        async def write_point(self, point: str, value: Any, verify: bool) -> Any:
            writes.append((point, value))
            return value

    control = GatewayControl(SimpleNamespace(config=site, buses=[Bus()]))  # type: ignore[arg-type]
    with pytest.raises(CommandFailed, match="relay board of broadcast output"):
        asyncio.run(control.write_point("siren.coil", True))
    assert writes == []
    assert asyncio.run(control.write_point("dam.level", 1.0))["verified"] is True
