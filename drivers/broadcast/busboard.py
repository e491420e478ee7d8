"""A relay board that is one unit on a polled Modbus line: its coil writes go through the bus task.

Only one master may talk on an RS-485 line. When the relay board shares the line with polled
gauges, the siren must not open its own client: each coil write (and the auto-off register
write) becomes a request to the bus scheduler, ``await bus.write_point(point_id, value,
verify=True)``, served between polls, with the coil read back by the same bus.

The siren's cadence and backstop still run in their own threads; they hand each write to the
event loop with ``run_coroutine_threadsafe`` and wait for it, bounded. So on this route an OFF
needs the event loop and the bus task to be alive: the board's own auto-off register is what
drops the relay when they are not (a bus-routed siren must configure ``board_auto_off``).

This module imports no hardware library and nothing from the Modbus driver: the bus is seen
through the small protocols below, so config validation can use it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from drivers.broadcast.base import RelayError
from drivers.broadcast.config import (
    AlsaAudioConfig,
    BoardAutoOffConfig,
    RelayCoilConfig,
    SirenRelayConfig,
)
from gateway.shared import ConfigPath


class WritePoint(Protocol):
    """The bus scheduler's verified write of a configured point (``ModbusBus.write_point``)."""

    def __call__(self, point_id: str, value: float | bool | str, verify: bool = True) -> Awaitable[Any]: ...


class PointLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def writable(self) -> bool: ...


class DeviceLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def unit_id(self) -> int: ...
    @property
    def points(self) -> Sequence[PointLike]: ...


class BusConfigLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def devices(self) -> Sequence[DeviceLike]: ...


class BusLike(Protocol):
    """What the daemon's Modbus bus object offers (drivers/modbus/bus.py ``ModbusBus``)."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Any: ...  # a BusConfigLike; Any so the bus's concrete config type fits
    @property
    def connected(self) -> bool: ...
    def write_point(self, point_id: str, value: float | bool | str, verify: bool = True) -> Awaitable[Any]: ...


class BusPointMissing(ValueError):
    """The board's coil (or auto-off register) is not a usable configured point of the bus."""


def find_point(bus: BusConfigLike, unit_id: int, table: str, address: int, purpose: str) -> str:
    """The id of the writable ``table`` point at ``address`` of unit ``unit_id`` on ``bus``."""
    devices = [d for d in bus.devices if d.unit_id == unit_id]
    if not devices:
        raise BusPointMissing(f"{purpose}: bus '{bus.name}' has no device with unit_id {unit_id}; add the relay "
                              f"board as a device of that bus")
    hint = (f"add to a device with unit_id {unit_id} of bus '{bus.name}': "
            f"{{id: <name>, table: {table}, address: {address}"
            + (", type: bool}" if table == "coil" else ", type: uint16}"))
    for device in devices:
        for point in device.points:
            if point.table != table or point.address != address:
                continue
            if not point.writable:
                raise BusPointMissing(f"{purpose}: point '{point.id}' ({table} {address}) is not writable "
                                      "(no bit:, no enum:)")
            if table == "holding" and (point.type not in ("uint16", "int16") or point.scale != 1.0
                                       or point.offset != 0.0):
                raise BusPointMissing(f"{purpose}: point '{point.id}' must be a raw register "
                                      "(type: uint16, no scale/offset)")
            return point.id
    raise BusPointMissing(f"{purpose}: the {table} at address {address} is not a configured point of the bus; "
                          f"{hint}")


def _mismatch(exc: BaseException) -> bool:
    """Did the board answer but not confirm the value (the relay did not switch)?

    The Modbus bus raises WriteError("... read-back [0] after writing [1]") when the verify read
    differs, and "... write echo does not match the request" when a board answers the write with
    the coil's actual state (pymodbus's simulator does; so do some boards). Both are a valid reply
    that denies the switch, not a silent board.
    """
    text = str(exc)
    return bool(getattr(exc, "readback_mismatch", False)) or "read-back" in text or "echo does not match" in text


class CoilWriter:
    """One bus's route for relay boards: point lookup plus the bus's verified write."""

    def __init__(self, bus_config: BusConfigLike, write_point: WritePoint,
                 connected: Callable[[], bool] = lambda: True) -> None:
        self.bus_config = bus_config
        self.name = bus_config.name
        self._write_point = write_point
        self._connected = connected

    @classmethod
    def for_bus(cls, bus: BusLike) -> CoilWriter:
        return cls(bus.config, bus.write_point, lambda: bool(bus.connected))

    @property
    def connected(self) -> bool:
        return self._connected()

    def point(self, unit_id: int, table: str, address: int, purpose: str) -> str:
        return find_point(self.bus_config, unit_id, table, address, purpose)

    async def write(self, point_id: str, value: bool | int, verify: bool) -> Any:
        return await self._write_point(point_id, value, verify)


async def _await(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


class BusRelayCoil:
    """The `Relay` of a board on a bus: same blocking interface as `RelayCoil`, for the siren threads."""

    can_read = False  # no on-demand read through the bus: the proof is the verified write

    def __init__(self, config: RelayCoilConfig, writer: CoilWriter,
                 auto_off: BoardAutoOffConfig | None = None) -> None:
        board = config.board
        assert board.unit_id is not None  # validated: transport bus has unit_id
        self.config = config
        self.writer = writer
        self._verify = config.readback != "none"
        self._coil_point = writer.point(board.unit_id, "coil", config.coil, f"relay coil {config.coil}")
        self._auto_off_point = (
            writer.point(board.unit_id, "holding", auto_off.register_address, "board_auto_off")
            if auto_off is not None else None
        )
        self._wait = board.wait_s
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the bus task runs on; the async side calls this before any thread uses the relay."""
        self._loop = loop

    def _run(self, what: str, point_id: str, value: bool | int, verify: bool) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RelayError(f"{what}: no running event loop for bus '{self.writer.name}'")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # blocking here would starve the very loop that must serve the write
            raise RelayError(f"{what}: called on the event loop thread")
        future = asyncio.run_coroutine_threadsafe(
            _await(lambda: self.writer.write(point_id, value, verify)), loop)
        try:
            return future.result(timeout=self._wait)
        except TimeoutError:
            # Not cancelled: the queued write still goes out, in order, once the bus serves it.
            raise RelayError(f"{what}: bus '{self.writer.name}' did not serve the write within "
                             f"{self._wait:g} s (event loop or bus busy)") from None

    def switch(self, on: bool) -> bool | None:
        """Write ``on`` through the bus; the bus reads the coil back. Returns the read-back (None without)."""
        what = f"write coil {self.config.coil}={int(on)} via bus '{self.writer.name}'"
        try:
            value = self._run(what, self._coil_point, on, self._verify)
        except RelayError:
            raise
        except Exception as exc:
            if self._verify and _mismatch(exc):
                return not on
            raise RelayError(f"{what}: {exc}") from exc
        return bool(value) if self._verify else None

    def write(self, on: bool) -> None:
        self.switch(on)

    def read_back(self) -> bool | None:
        """No on-demand read on a shared line: None (unknown) while the bus is connected."""
        if not self.writer.connected:
            raise RelayError(f"bus '{self.writer.name}' is not connected")
        return None

    def arm_board_auto_off(self, auto_off: BoardAutoOffConfig, seconds: float) -> None:
        import math

        if self._auto_off_point is None:
            raise RelayError("board_auto_off: no register point resolved for this relay")
        value = min(auto_off.max_value, max(1, math.ceil(seconds / auto_off.time_unit)))
        what = f"write auto-off register {auto_off.register_address} via bus '{self.writer.name}'"
        try:
            self._run(what, self._auto_off_point, value, True)
        except RelayError:
            raise
        except Exception as exc:
            raise RelayError(f"{what}: {exc}") from exc

    def close(self) -> None:
        """Nothing to close: the bus owns the port."""


def _relays(config: object) -> Iterable[tuple[str, ConfigPath, RelayCoilConfig, BoardAutoOffConfig | None]]:
    """Each relay of an output: its role, its path within the output, its config and its auto-off."""
    if isinstance(config, SirenRelayConfig):
        yield "siren", (), config, config.board_auto_off
    elif isinstance(config, AlsaAudioConfig) and config.amplifier is not None:
        yield "amplifier", ("amplifier",), config.amplifier, None


def bus_board_problems(outputs: Mapping[str, object], buses: Sequence[Any]) -> list[tuple[ConfigPath, str]]:
    """Cross-section check of ``broadcast.outputs`` against ``buses``: every problem, each at its path
    below ``outputs`` (``("siren", "board", "bus")``).

    A ``transport: bus`` board needs its bus, its unit and its coil (and auto-off register) as
    configured points; a board with its own master must not open a port a bus already owns.
    """
    problems: list[tuple[ConfigPath, str]] = []
    by_name = {getattr(b, "name", ""): b for b in buses}
    for name, config in outputs.items():
        for role, at, relay, auto_off in _relays(config):
            board = relay.board
            where = f"{name} ({role})"
            if board.transport == "bus":
                bus = by_name.get(str(board.bus))
                if bus is None or getattr(bus, "type", "") not in ("modbus_rtu", "modbus_tcp"):
                    problems.append(((name, *at, "board", "bus"),
                                     f"{where}: board.bus '{board.bus}' is not a Modbus bus of buses:"))
                    continue
                assert board.unit_id is not None
                checks: list[tuple[ConfigPath, str, int, str]] = [
                    ((name, *at, "coil"), "coil", relay.coil, f"{where}: coil {relay.coil}")]
                if auto_off is not None:
                    checks.append(((name, *at, "board_auto_off", "register_address"), "holding",
                                   auto_off.register_address, f"{where}: board_auto_off"))
                if not any(device.unit_id == board.unit_id for device in bus.devices):
                    checks = [((name, *at, "board", "unit_id"), "coil", relay.coil, where)]  # one line says it
                for path, table, address, purpose in checks:
                    try:
                        find_point(bus, board.unit_id, table, address, purpose)
                    except BusPointMissing as exc:
                        problems.append((path, str(exc)))
                continue
            for bus in buses:
                shared = (
                    board.transport == "serial" and getattr(bus, "port", None) == board.serial_port
                ) or (
                    board.transport == "tcp" and getattr(bus, "type", "") == "modbus_tcp"
                    and getattr(bus, "framer", "socket") != "socket"
                    and (getattr(bus, "host", None), getattr(bus, "port", None)) == (board.host, board.port)
                )
                if shared:
                    port_key = "serial_port" if board.transport == "serial" else "port"
                    problems.append(((name, *at, "board", port_key),
                                     f"{where}: the board's port is bus '{bus.name}''s line (one master per line); "
                                     f"use board: {{transport: bus, bus: {bus.name}, unit_id: <board unit>}}"))
    return problems


def _same_host(a: str, b: str) -> bool:
    loopback = {"localhost", "127.0.0.1", "::1"}
    a, b = a.strip().lower(), b.strip().lower()
    return a == b or (a in loopback and b in loopback)


def board_units(outputs: Mapping[str, object], buses: Sequence[Any]) -> dict[tuple[str, int], list[str]]:
    """(bus name, unit id) of every polled unit that is a broadcast output's relay board -> the outputs.

    A board reached through a bus (``transport: bus``) is that unit; a board with its own master is
    also a unit of any bus that polls the same endpoint (a ``modbus_tcp`` bus to its address, a
    ``modbus_rtu`` bus on its serial port), whatever that bus calls its points. Anything written to
    such a unit can switch a siren or an amplifier, or disarm a board's auto-off.
    """
    units: dict[tuple[str, int], list[str]] = {}
    for name, config in outputs.items():
        for _role, _at, relay, _auto_off in _relays(config):
            board = relay.board
            if board.transport == "bus":
                assert board.unit_id is not None
                units.setdefault((str(board.bus), board.unit_id), []).append(name)
                continue
            for bus in buses:
                kind = getattr(bus, "type", "")
                same = (kind == "modbus_tcp" and board.transport == "tcp"
                        and getattr(bus, "port", None) == board.port
                        and _same_host(str(getattr(bus, "host", "")), board.host)) or (
                        kind == "modbus_rtu" and board.transport == "serial"
                        and getattr(bus, "port", None) == board.serial_port)
                if same:
                    units.setdefault((bus.name, board.device_id), []).append(name)
    return units
