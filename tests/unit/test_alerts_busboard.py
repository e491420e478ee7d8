"""Relay boards on a polled bus: config validation and the cross-check against the buses section."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.broadcast.busboard import BusPointMissing, BusRelayCoil, CoilWriter
from drivers.broadcast.config import SirenRelayConfig
from drivers.broadcast.relay import make_relay
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.interlock import check_bus_boards
from gateway.shared import PlacedConfigError

BOARD = {"transport": "bus", "bus": "line1", "unit_id": 2}
AUTO_OFF = {"register_address": 5}


def siren(**kw: Any) -> SirenRelayConfig:
    base: dict[str, Any] = {"type": "modbus_relay_siren", "coil": 0, "board": BOARD, "board_auto_off": AUTO_OFF}
    return SirenRelayConfig.model_validate({**base, **kw})


def line(points: list[dict[str, Any]], unit_id: int = 2, port: str = "/dev/ttyUSB1") -> ModbusRtuBus:
    return ModbusRtuBus.model_validate({
        "type": "modbus_rtu", "name": "line1", "port": port,
        "devices": [{"name": "gauge", "unit_id": 1, "points": [{"id": "level", "address": 0}]},
                    {"name": "relays", "unit_id": unit_id, "points": points}],
    })


RELAY_POINTS = [{"id": "siren.coil", "table": "coil", "address": 0, "type": "bool"},
                {"id": "siren.auto_off", "table": "holding", "address": 5}]


def broadcast(outputs: dict[str, Any]) -> BroadcastConfig:
    return BroadcastConfig.model_validate({
        "outputs": outputs, "zones": {"dam": {"outputs": list(outputs)}}, "clips": {"x": {"file": "/x.wav"}},
        "patterns": {"a": {"steps": [[2, 1]]}, "b": {"steps": [[1, 2]]}},
        "status_patterns": {"actual": "a", "exercise": "b"}, "announce": {"exercise": "x", "test": "x"},
        "all_clear_clip": "x",
    })


@pytest.mark.parametrize(("board", "extra", "message"), [
    ({"transport": "bus", "bus": "line1"}, {}, "unit_id"),
    ({"transport": "bus", "unit_id": 2}, {}, "needs bus:"),
    ({**BOARD, "serial_port": "/dev/ttyUSB1"}, {}, "remove serial_port"),
    ({**BOARD, "device_id": 3}, {}, "remove device_id"),
    ({"transport": "tcp", "unit_id": 2}, {}, "are for transport: bus"),
    (BOARD, {"readback": "discrete_input", "readback_address": 3}, "use readback: coil"),
    (BOARD, {"board_auto_off": None}, "needs board_auto_off"),
])
def test_bus_board_config_errors_say_what_to_do(board: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        siren(board=board, **extra)


def test_bus_board_timeout_defaults_to_the_bus_queue_wait() -> None:
    assert siren().board.wait_s == 5.0
    assert siren(board={**BOARD, "timeout": 2}).board.wait_s == 2.0
    direct = siren(board={"transport": "tcp"}, board_auto_off=None)
    assert direct.board.wait_s == 1.0


def test_cross_check_accepts_configured_points() -> None:
    check_bus_boards(broadcast({"s": siren().model_dump()}), [line(RELAY_POINTS)])


@pytest.mark.parametrize(("points", "unit_id", "message"), [
    (RELAY_POINTS, 7, "no device with unit_id 2"),
    (RELAY_POINTS[1:], 2, r"coil at address 0 is not a configured point.*table: coil, address: 0"),
    (RELAY_POINTS[:1], 2, "board_auto_off: the holding at address 5 is not a configured point"),
    ([RELAY_POINTS[0], {**RELAY_POINTS[1], "scale": 0.1}], 2, "raw register"),
    ([{"id": "c", "table": "holding", "address": 0, "bit": 0, "type": "bool"}, RELAY_POINTS[1]], 2,
     "coil at address 0 is not a configured point"),
])
def test_cross_check_names_the_missing_point(points: list[dict[str, Any]], unit_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_bus_boards(broadcast({"s": siren().model_dump()}), [line(points, unit_id)])


def test_cross_check_reports_every_missing_point_at_its_key() -> None:
    """A board missing both its coil and its auto-off register hears of both, each where it is written."""
    with pytest.raises(PlacedConfigError) as caught:
        check_bus_boards(broadcast({"s": siren().model_dump()}), [line([{"id": "other", "address": 9}])])
    assert [path for path, _ in caught.value.problems] == [
        ("broadcast", "outputs", "s", "coil"), ("broadcast", "outputs", "s", "board_auto_off", "register_address")]
    with pytest.raises(PlacedConfigError) as caught:  # no such unit: one problem, at the unit id
        check_bus_boards(broadcast({"s": siren().model_dump()}), [line(RELAY_POINTS, 7)])
    assert [path for path, _ in caught.value.problems] == [("broadcast", "outputs", "s", "board", "unit_id")]


def test_cross_check_refuses_a_second_master_on_a_bus_line() -> None:
    direct = siren(board={"transport": "serial", "serial_port": "/dev/ttyUSB1"}, board_auto_off=None)
    with pytest.raises(ValueError, match=r"one master per line.*transport: bus, bus: line1"):
        check_bus_boards(broadcast({"s": direct.model_dump()}), [line(RELAY_POINTS)])
    # A TCP-to-RS485 bridge polled with RTU frames is a line too; a Modbus TCP server is not.
    bridge = ModbusTcpBus.model_validate({"type": "modbus_tcp", "name": "line1", "host": "10.0.0.5", "port": 4001,
                                          "framer": "rtu", "devices": [{"name": "g", "points": [{"id": "l",
                                                                                               "address": 0}]}]})
    via_bridge = siren(board={"transport": "tcp", "host": "10.0.0.5", "port": 4001}, board_auto_off=None)
    with pytest.raises(ValueError, match="one master per line"):
        check_bus_boards(broadcast({"s": via_bridge.model_dump()}), [bridge])
    server = bridge.model_copy(update={"framer": "socket"})
    check_bus_boards(broadcast({"s": via_bridge.model_dump()}), [server])


def test_cross_check_covers_the_amplifier_relay_and_unknown_buses() -> None:
    audio = {"type": "alsa_audio", "amplifier": {"board": {**BOARD, "bus": "nope"}, "coil": 1}}
    with pytest.raises(ValueError, match=r"s \(amplifier\): board.bus 'nope' is not a Modbus bus"):
        check_bus_boards(broadcast({"s": audio}), [line(RELAY_POINTS)])


async def _never(point_id: str, value: float | bool | str, verify: bool = True) -> Any:
    raise AssertionError("no write expected")


def test_relay_needs_the_writer_of_its_bus() -> None:
    with pytest.raises(ValueError, match=r"no coil writer for that bus.*buses="):
        make_relay(siren(), {})
    writer = CoilWriter(line(RELAY_POINTS), _never)
    relay = make_relay(siren(), {"line1": writer}, siren().board_auto_off)
    assert isinstance(relay, BusRelayCoil) and relay.can_read is False
    with pytest.raises(BusPointMissing):
        make_relay(siren(coil=9), {"line1": writer})
