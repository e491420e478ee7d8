"""Technician tools: `fieldgate probe`, `fieldgate scan`, and the request plan for `validate --explain`.

Both tools open serial ports with an exclusive lock, the same lock the running gateway
holds, so they refuse to talk over a live bus instead of corrupting its traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import sys
from typing import Any

from drivers.modbus.codec import decode_raw, device_blocks, registers_to_bytes
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus, inter_frame_gap
from drivers.modbus.frames import ExceptionReply, FrameError, FramerKind, read_request
from drivers.modbus.master import Master, NoAnswer
from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import SerialSettings, char_time
from drivers.ports.stream import PortBusy, PortLost, Transport
from drivers.ports.tcp import TcpTransport
from gateway.shared import parse_duration

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
RTU_READ_REQUEST_BYTES = 8  # unit, function, address(2), count(2), CRC(2)


# --- validate --explain -----------------------------------------------------------------


def explain(bus: Any) -> list[str]:
    """Human lines describing what ``bus`` will put on the wire each poll cycle."""
    if isinstance(bus, ModbusRtuBus | ModbusTcpBus):
        return _explain_modbus(bus)
    lines = [f"bus {bus.name} ({bus.type})"]
    for device in getattr(bus, "devices", []):
        what = f"send {device.request!r}, read one line" if device.mode == "poll" else "listen"
        lines.append(f"  device {device.name}: {device.mode}, {what}, timeout {device.timeout:g}s, "
                     f"{len(device.points)} points")
    return lines


def _explain_modbus(bus: ModbusRtuBus | ModbusTcpBus) -> list[str]:
    serial_line = isinstance(bus, ModbusRtuBus)
    lines = [f"bus {bus.name} ({bus.type}, framer {bus.framer})"]
    busy_per_second = 0.0
    for device in bus.devices:
        blocks = device_blocks(device.points, device.max_block, device.max_gap, device.coalesce)
        registers = sum(b.count for b in blocks)
        flags = [f for f, on in (("priority", device.priority or any(p.priority for p in device.points)),
                                 ("no coalescing", not device.coalesce)) if on]
        lines.append(f"  device {device.name} unit {device.unit_id}: {len(blocks)} requests per poll "
                     f"every {device.poll_interval:g}s ({len(device.points)} points, {registers} units read)"
                     + (f" [{', '.join(flags)}]" if flags else ""))
        for block in blocks:
            names = ", ".join(p.id for p in block.points)
            lines.append(f"    read {block.table} {block.start}..{block.start + block.count - 1} "
                         f"({block.count}) → {names}")
        if serial_line:
            assert isinstance(bus, ModbusRtuBus)
            seconds = sum(wire_seconds(b.table, b.count, bus) for b in blocks)
            busy_per_second += seconds / max(device.poll_interval, 1e-3)
    if isinstance(bus, ModbusRtuBus):
        lines.append(f"  line use at {bus.baud} baud: {100 * busy_per_second:.1f}% "
                     "(request + reply + inter-frame gaps, no reply latency)")
    return lines


def reply_bytes(table: str, count: int) -> int:
    data = 2 * count if table in ("holding", "input") else (count + 7) // 8
    return 3 + data + 2  # unit, function, byte count, data, CRC


def wire_seconds(table: str, count: int, bus: ModbusRtuBus) -> float:
    """Line time of one RTU read: both frames at the baud rate plus two inter-frame gaps."""
    char = char_time(bus.baud, bus.bytesize, bus.parity, bus.stopbits)
    gap = inter_frame_gap(bus.baud, bus.bytesize, bus.parity, bus.stopbits) + bus.frame_gap_margin
    return (RTU_READ_REQUEST_BYTES + reply_bytes(table, count)) * char + 2 * gap


# --- command line -------------------------------------------------------------------------


def add_subcommands(subparsers: Any) -> None:
    """Add `probe` and `scan` to the `fieldgate` argument parser (handler in ``args.handler``)."""
    probe = subparsers.add_parser("probe", help="read a register range live, shown as every type and byte order")
    _connection_args(probe)
    probe.add_argument("--unit", type=int, default=1)
    probe.add_argument("--table", choices=("holding", "input", "coil", "discrete"), default="holding")
    probe.add_argument("--address", type=int, default=0, help="0-based register address")
    probe.add_argument("--count", type=int, default=4, help="registers to read (1..125)")
    probe.add_argument("--scale", default="1,0.1,0.01,0.001", help="scale candidates, comma separated")
    probe.set_defaults(handler=cmd_probe)

    scan = subparsers.add_parser("scan", help="find answering unit ids across baud rates and parities")
    scan.add_argument("--port", required=True, help="serial device")
    scan.add_argument("--bauds", default="9600,19200,4800,38400,115200")
    scan.add_argument("--parities", default="N,E")
    scan.add_argument("--units", default="1-247", help="e.g. 1-247 or 1,2,10-20")
    scan.add_argument("--timeout", type=parse_duration, default=0.1, help="wait per unit id (100ms)")
    scan.add_argument("--table", choices=("holding", "input", "coil", "discrete"), default="holding")
    scan.add_argument("--address", type=int, default=0)
    scan.set_defaults(handler=cmd_scan)


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", help="serial device (RTU/ASCII)")
    parser.add_argument("--host", help="Modbus TCP host (or serial server)")
    parser.add_argument("--tcp-port", type=int, default=502)
    parser.add_argument("--framer", choices=("rtu", "ascii", "socket"), help="default: rtu on serial, socket on TCP")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument("--timeout", type=parse_duration, default=1.0, help="wait per request (1s)")


def parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 247:
            raise ValueError(f"unit ids are 1..247, got {part!r}")
        units.extend(range(first, last + 1))
    return units


def _master(args: argparse.Namespace, baud: int | None = None, parity: str | None = None) -> Master:
    if getattr(args, "host", None):
        framer: FramerKind = args.framer or "socket"
        return Master(TcpTransport(args.host, args.tcp_port), framer)
    if not args.port:
        raise SystemExit("give --port (serial) or --host (TCP)")
    baud = baud or args.baud
    parity = parity or args.parity
    stopbits = getattr(args, "stopbits", 1)
    transport: Transport = SerialTransport(SerialSettings(args.port, baud, parity, stopbits))
    gap = inter_frame_gap(baud, 8, parity, stopbits) + 0.002
    return Master(transport, getattr(args, "framer", None) or "rtu", gap)


async def _open(master: Master) -> str | None:
    try:
        await master.transport.open()
    except PortBusy as exc:
        return f"{exc}: a running gateway owns it. Stop fieldgate (systemctl stop fieldgate) to probe this port."
    except PortLost as exc:
        return str(exc)
    return None


def cmd_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_probe(args))


async def _probe(args: argparse.Namespace) -> int:
    master = _master(args)
    error = await _open(master)
    if error:
        print(error, file=sys.stderr)
        return 2
    try:
        words = await master.transact(args.unit, read_request(args.table, args.address, args.count), args.timeout)
    except (NoAnswer, FrameError, ExceptionReply, PortLost, ValueError) as exc:
        print(f"unit {args.unit} {args.table} {args.address}+{args.count}: {exc}", file=sys.stderr)
        return 1
    finally:
        master.transport.close()
    scales = [float(s) for s in args.scale.split(",") if s.strip()]
    for line in probe_table(words, args.address, args.table, scales):
        print(line)
    return 0


def probe_table(words: list[int], address: int, table: str, scales: list[float]) -> list[str]:
    """Every interpretation of ``words``: per start address, each type in all four orders, with scaled candidates."""
    if table in ("coil", "discrete"):
        return [f"{address + i:5d}  {bit}" for i, bit in enumerate(words)]
    lines = [f"{'addr':>5}  {'hex':6} {'uint16':>6} {'int16':>6}  text"]
    for i, word in enumerate(words):
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in word.to_bytes(2, "big"))
        lines.append(f"{address + i:5d}  {word:04X}   {word:6d} {decode_raw([word], 'int16', 'ABCD'):6d}  {text}")
    for width, types in ((2, ("uint32", "int32", "float32")), (4, ("uint64", "int64", "float64"))):
        for i in range(len(words) - width + 1):
            chunk = words[i : i + width]
            lines.append(f"{address + i:5d}..{address + i + width - 1}:")
            for data_type in types:
                cells = []
                for order in ORDERS:
                    value = decode_raw(chunk, data_type, order)
                    cells.append(f"{order} {_fmt(value)}")
                lines.append(f"    {data_type:8} " + "   ".join(cells))
            lines.append("    scaled   " + "   ".join(
                f"{order} " + "/".join(_fmt(decode_raw(chunk, f'int{16 * width}', order) * s) for s in scales)
                for order in ORDERS))
    return lines


def _fmt(value: float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def cmd_scan(args: argparse.Namespace) -> int:
    return asyncio.run(_scan(args))


async def _scan(args: argparse.Namespace) -> int:
    units = parse_units(args.units)
    bauds = [int(b) for b in args.bauds.split(",")]
    parities = [p.strip().upper() for p in args.parities.split(",")]
    found: list[tuple[int, str, int, str]] = []
    settings = [(b, p) for b in bauds for p in parities]
    for n, (baud, parity) in enumerate(settings, 1):
        args.framer = "rtu"
        master = _master(args, baud, parity)
        error = await _open(master)
        if error:
            print(f"\n{error}", file=sys.stderr)
            return 2
        noise = 0
        try:
            for i, unit in enumerate(units, 1):
                print(f"\rscan {n}/{len(settings)} {baud} 8{parity}1 unit {unit:3d} ({i}/{len(units)}) "
                      f"found {len(found)}", end="", file=sys.stderr, flush=True)
                answer = await _try_unit(master, unit, args.table, args.address, args.timeout)
                if answer == "garbage":
                    noise += 1
                elif answer is not None:
                    found.append((baud, parity, unit, answer))
        except PortLost as exc:
            print(f"\nport lost: {exc}", file=sys.stderr)
            return 2
        finally:
            master.transport.close()
        if noise:
            found.append((baud, parity, 0, f"{noise} garbled replies (a device at another baud rate or parity?)"))
    print(file=sys.stderr)
    for baud, parity, unit, answer in found:
        where = f"unit {unit:3d}" if unit else "line    "
        print(f"{baud:6d} 8{parity}1 {where}: {answer}")
    return 0 if any(unit for _, _, unit, _ in found) else 1


async def _try_unit(master: Master, unit: int, table: str, address: int, wait: float) -> str | None:
    try:
        words = await master.transact(unit, read_request(table, address, 1), wait)
    except NoAnswer:
        return None
    except FrameError:
        return "garbage"
    except ExceptionReply as exc:
        return f"answers ({exc})"
    return f"answers, {table} {address} = {words[0]}"


def float_candidates(words: list[int]) -> dict[str, float]:
    """The float32 a pair of registers holds in each order (used by probe tests)."""
    return {o: struct.unpack(">f", registers_to_bytes(words, o))[0] for o in ORDERS}
