"""Modbus RTU master stacks side by side: our own master (drivers/modbus/master.py over
drivers/ports/serialport.py) against pymodbus's AsyncModbusSerialClient (RTU framer, retries=0,
the same per-request timeout), on the same virtual lines and the same seeded faults.

Every scenario runs the same fixed list of read transactions through each stack:

    gateway ⇄ socat pty pair ⇄ relay (timing, faults) ⇄ socat pty pair ⇄ LineSimulator (the units)

and counts, per stack: good answers, wrong values accepted (an answer the stack returned as good
that is not what the unit holds at the asked addresses), no-answer / bad-frame / device-error /
port-lost failures, requests that ran past their timeout (guarded at timeout + 2 s so the bench
itself never hangs), exceptions that escaped the stack's documented ones, exceptions raised in
event-loop callbacks, recovery after a failed transaction (was the next one good), the silence the
stack left on the line before each request (against t3.5 at 19200 baud) and CPU of the event-loop
thread per 1000 transactions (the simulator and the relay run in other threads).

Scenarios: 8 units with one dead and one slow; a unit slower than its timeout (late replies);
5 % and 20 % frame noise; replies re-addressed from another unit, with the wrong function, with the
wrong length; the port pulled and plugged back; a second opener of the port.

    .venv/bin/python bench/modbus_stack.py [--cycles 15] [--only NAME,...]   → prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import serial

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymodbus import __version__ as pymodbus_version  # noqa: E402
from pymodbus.client import AsyncModbusSerialClient  # noqa: E402
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException  # noqa: E402
from pymodbus.framer import FramerType  # noqa: E402

from drivers.modbus.config import inter_frame_gap  # noqa: E402
from drivers.modbus.frames import ExceptionReply, FrameError, encode, read_request  # noqa: E402
from drivers.modbus.master import Master, NoAnswer  # noqa: E402
from drivers.ports.serialport import SerialTransport  # noqa: E402
from drivers.ports.settings import SerialSettings  # noqa: E402
from drivers.ports.stream import PortLost  # noqa: E402
from sim.modbus import SimUnit  # noqa: E402
from sim.rs485 import LineSimulator, NoiseRelay  # noqa: E402

BAUD = 19200
T35 = inter_frame_gap(BAUD)
MARGIN = 0.002  # our bus's default frame_gap_margin
TIMEOUT, SLOW_TIMEOUT = 0.15, 0.25
GUARD = 2.0  # a request still running at timeout + GUARD is cancelled by the bench and counted as hung
LATE = 0.1  # finishing later than timeout + LATE counts as "past its timeout"
BLOCKS = (("holding", 0, 6), ("holding", 8, 6), ("coil", 0, 8))  # equal-sized register blocks on purpose

Tx = tuple[int, str, int, int, float]  # unit, table, start, count, timeout


def expected(unit: int, table: str, start: int, count: int) -> list[int]:
    if table == "holding":
        return [unit * 100 + a for a in range(start, start + count)]
    return [(unit + a) % 2 for a in range(start, start + count)]


def make_units(ids: tuple[int, ...], delays: dict[int, float] | None = None) -> list[SimUnit]:
    units = []
    for unit_id in ids:
        unit = SimUnit(unit_id, size=32, delay=(delays or {}).get(unit_id, 0.0))
        unit.set_registers("holding", 0, expected(unit_id, "holding", 0, 32))
        unit.tables["coil"][:32] = expected(unit_id, "coil", 0, 32)
        units.append(unit)
    return units


# --- the two stacks behind one interface ------------------------------------------------


class Failure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Stack(Protocol):
    name: str

    async def open(self) -> None: ...
    async def read(self, unit: int, table: str, start: int, count: int, reply_within: float) -> list[int]: ...
    async def recover(self) -> None: ...
    def close(self) -> None: ...


class OwnStack:
    name = "own_master"

    def __init__(self, port: str) -> None:
        self.port = port
        self.master: Master | None = None

    async def open(self) -> None:
        transport = SerialTransport(SerialSettings(self.port, BAUD))
        try:
            await transport.open()
        except PortLost as exc:
            raise Failure("port_lost", str(exc)) from None
        self.master = Master(transport, "rtu", gap=T35 + MARGIN)

    async def read(self, unit: int, table: str, start: int, count: int, reply_within: float) -> list[int]:
        if self.master is None:
            raise Failure("port_lost", "not open")
        try:
            return await self.master.transact(unit, read_request(table, start, count), reply_within)
        except NoAnswer as exc:
            raise Failure("no_answer", str(exc)) from None
        except FrameError as exc:
            raise Failure("bad_frame", str(exc)) from None
        except ExceptionReply as exc:
            raise Failure("device_error", str(exc)) from None
        except PortLost as exc:
            raise Failure("port_lost", str(exc)) from None

    async def recover(self) -> None:
        """What drivers/modbus/bus.py does: close, reopen (the caller backs off on failure)."""
        self.close()
        await self.open()

    def close(self) -> None:
        if self.master is not None:
            self.master.transport.close()
            self.master = None


class PymodbusStack:
    name = f"pymodbus_{pymodbus_version}"

    def __init__(self, port: str) -> None:
        self.client = AsyncModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=BAUD, retries=0, timeout=TIMEOUT,
            reconnect_delay=0.1, reconnect_delay_max=0.5,
        )

    async def open(self) -> None:
        if not await self.client.connect():
            raise Failure("port_lost", "connect() returned False")

    async def read(self, unit: int, table: str, start: int, count: int, reply_within: float) -> list[int]:
        client = self.client
        client.ctx.comm_params.timeout_connect = reply_within  # the reply timeout it waits for
        call = client.read_holding_registers if table == "holding" else client.read_coils
        try:
            response = await call(start, count=count, device_id=unit)
        except ConnectionException as exc:
            raise Failure("port_lost", str(exc)) from None
        except ModbusIOException as exc:
            raise Failure("no_answer", str(exc)) from None
        except ModbusException as exc:
            raise Failure("bad_frame", str(exc)) from None
        if response.isError():
            raise Failure("device_error", str(response))
        # The documented way to read a response: registers, or bits (padded to a byte; cut to count).
        return list(response.registers) if table == "holding" else [int(b) for b in response.bits[:count]]

    async def recover(self) -> None:
        """pymodbus reconnects by itself (reconnect_delay); if it is not trying, ask it once."""
        if not self.client.connected and self.client.ctx.reconnect_task is None:
            await self.open()

    def close(self) -> None:
        self.client.close()


STACKS: dict[str, Callable[[str], Stack]] = {"own_master": OwnStack, "pymodbus": PymodbusStack}


# --- the line ---------------------------------------------------------------------------


class PtyPair:
    def __init__(self, directory: Path, name: str) -> None:
        self.gateway, self.device = directory / f"{name}-gw", directory / f"{name}-dev"
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self) -> PtyPair:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.gateway}", f"pty,raw,echo=0,link={self.device}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            if self.gateway.exists() and self.device.exists():
                return self
            time.sleep(0.025)
        raise RuntimeError("socat did not make the pty pair")

    def pull(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None
        for _ in range(400):
            if not self.gateway.exists():
                return
            time.sleep(0.025)


Transform = Callable[[bytes], bytes]


class Relay(NoiseRelay):
    """The noise relay, plus a hook on replies and a clock on the silence before each request."""

    def __init__(self, gateway_side: str, device_side: str, rate: float, seed: int,
                 on_reply: Transform | None = None) -> None:
        super().__init__(gateway_side, device_side, rate, seed)
        self.on_reply = on_reply
        self.gaps: list[float] = []  # silence between a reply written to the gateway and its next request
        self._last_reply = 0.0

    def _run(self) -> None:
        pairs = {self.a.fileno(): (self.a, self.b, "to_devices"), self.b.fileno(): (self.b, self.a, "to_gateway")}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(pairs), [], [], 0.05)
                for fd in ready:
                    src, dst, direction = pairs[fd]
                    if direction == "to_devices" and self._last_reply:
                        self.gaps.append(time.monotonic() - self._last_reply)
                        self._last_reply = 0.0
                    time.sleep(0.002)  # let the whole frame arrive
                    chunk = src.read(4096)
                    self.bytes[direction] += len(chunk)
                    out = self.damage(chunk)
                    if out and direction == "to_gateway" and self.on_reply is not None:
                        out = self.on_reply(out)
                    if out:
                        if direction == "to_gateway":
                            self._last_reply = time.monotonic()  # before the write: the GIL may delay after
                        dst.write(out)
            except (OSError, serial.SerialException, ValueError):
                time.sleep(0.05)


@contextlib.contextmanager
def line(units: list[SimUnit], rate: float = 0.0, seed: int = 1,
         on_reply: Transform | None = None) -> Iterator[tuple[str, Relay]]:
    tmp = Path(tempfile.mkdtemp(prefix="fg-stack-"))
    pairs = [PtyPair(tmp, "gw").plug(), PtyPair(tmp, "dev").plug()]
    relay = Relay(str(pairs[0].device), str(pairs[1].gateway), rate, seed, on_reply)
    relay.start()
    sim = LineSimulator(str(pairs[1].device), units).start()
    try:
        yield str(pairs[0].gateway), relay
    finally:
        sim.stop()
        relay.stop()
        for pair in pairs:
            pair.pull()
        shutil.rmtree(tmp, ignore_errors=True)


# --- running transactions ----------------------------------------------------------------


@dataclass
class Tally:
    transactions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong_values: int = 0
    past_timeout: int = 0
    hung: int = 0
    escaped: Counter[str] = field(default_factory=Counter)
    callback_exceptions: Counter[str] = field(default_factory=Counter)
    failures_followed: int = 0
    recovered_next: int = 0
    cpu_s: float = 0.0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions, "outcomes": dict(self.outcomes),
            "wrong_values_accepted": self.wrong_values, "past_timeout": self.past_timeout, "hung": self.hung,
            "escaped_exceptions": dict(self.escaped), "callback_exceptions": dict(self.callback_exceptions),
            "recovery_after_failure": round(self.recovered_next / self.failures_followed, 3)
            if self.failures_followed else None,
            "cpu_ms_per_1000_tx": round(1e6 * self.cpu_s / max(self.transactions, 1), 1),
            "seconds": round(self.seconds, 2),
            "examples": self.examples[:3],
        }


async def one(stack: Stack, tx: Tx, tally: Tally) -> str:
    unit, table, start, count, timeout = tx
    began = time.monotonic()
    try:
        values = await asyncio.wait_for(stack.read(unit, table, start, count, timeout), timeout + GUARD)
    except Failure as f:
        kind = f.kind
    except TimeoutError:
        kind = "hung"
        tally.hung += 1
    except Exception as exc:  # exactly what this bench counts
        kind = "escaped"
        tally.escaped[type(exc).__name__] += 1
        if len(tally.examples) < 3:
            tally.examples.append(f"{type(exc).__name__}: {exc}"[:200])
    else:
        want = expected(unit, table, start, count)
        kind = "good" if values == want else "wrong"
        if kind == "wrong":
            tally.wrong_values += 1
            if len(tally.examples) < 3:
                tally.examples.append(f"unit {unit} {table} {start}+{count}: got {values[:8]} want {want[:8]}")
    if kind not in ("hung",) and time.monotonic() - began > timeout + LATE:
        tally.past_timeout += 1
    tally.transactions += 1
    tally.outcomes[kind] += 1
    return kind


def cycle_plan(units: tuple[int, ...], cycles: int, dead: tuple[int, ...] = (),
               timeouts: dict[int, float] | None = None) -> list[Tx]:
    plan: list[Tx] = []
    for _ in range(cycles):
        for unit in units:
            timeout = (timeouts or {}).get(unit, TIMEOUT)
            blocks = BLOCKS[:1] if unit in dead else BLOCKS  # like the bus: a silent unit gets one request
            plan += [(unit, table, start, count, timeout) for table, start, count in blocks]
    return plan


def per_unit(plan: list[Tx], kinds: list[str]) -> dict[int, dict[str, int]]:
    out: dict[int, Counter[str]] = {}
    for tx, kind in zip(plan, kinds, strict=True):
        out.setdefault(tx[0], Counter())[kind] += 1
    return {u: dict(c) for u, c in out.items()}


def gap_report(gaps: list[float]) -> dict[str, Any]:
    if not gaps:
        return {"requests_after_a_reply": 0}
    return {"requests_after_a_reply": len(gaps), "below_t35_19200": sum(g < T35 for g in gaps),
            "t35_ms": round(1000 * T35, 2), "min_ms": round(1000 * min(gaps), 2),
            "median_ms": round(1000 * statistics.median(gaps), 2)}


def run_stack(name: str, port: str, plan: list[Tx], relay: Relay | None = None) -> tuple[Tally, list[str]]:
    tally = Tally()
    kinds: list[str] = []

    async def main() -> None:
        stack = STACKS[name](port)
        await stack.open()
        try:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(
                lambda _loop, ctx: tally.callback_exceptions.update([type(ctx.get("exception")).__name__]))
            cpu, began = time.thread_time(), time.monotonic()
            previous = "good"
            for tx in plan:
                kind = await one(stack, tx, tally)
                kinds.append(kind)
                if previous != "good":
                    tally.failures_followed += 1
                    tally.recovered_next += kind == "good"
                previous = kind
            tally.cpu_s += time.thread_time() - cpu
            tally.seconds += time.monotonic() - began
        finally:
            stack.close()
            await asyncio.sleep(0.05)

    if relay is not None:
        relay.gaps.clear()
    asyncio.run(main())
    return tally, kinds


# --- scenarios ---------------------------------------------------------------------------


def scenario_dead_and_slow(name: str, cycles: int) -> dict[str, Any]:
    """8 units: 1-6 healthy, 7 dead (absent), 8 slow (60 ms, within its 250 ms timeout)."""
    plan = cycle_plan(tuple(range(1, 9)), cycles, dead=(7,), timeouts={8: SLOW_TIMEOUT})
    with line(make_units((1, 2, 3, 4, 5, 6, 8), {8: 0.06})) as (port, relay):
        tally, kinds = run_stack(name, port, plan, relay)
        gaps = gap_report(relay.gaps)
    return {**tally.report(), "per_unit": per_unit(plan, kinds), "line_silence_before_request": gaps}


def scenario_late_replies(name: str, cycles: int) -> dict[str, Any]:
    """Unit 8 answers after 200 ms with a 150 ms timeout: its replies land in the next transaction."""
    plan = cycle_plan((8, 1), cycles)
    with line(make_units((1, 8), {8: 0.2})) as (port, _relay):
        tally, kinds = run_stack(name, port, plan)
    return {**tally.report(), "per_unit": per_unit(plan, kinds)}


def scenario_noise(name: str, cycles: int, rate: float) -> dict[str, Any]:
    plan = cycle_plan((1, 2, 3, 4, 5, 6), cycles)
    with line(make_units((1, 2, 3, 4, 5, 6)), rate=rate, seed=7) as (port, relay):
        tally, _ = run_stack(name, port, plan, relay)
        damaged = dict(relay.stats.kinds)
        frames = relay.stats.frames
    failed = tally.transactions - tally.outcomes["good"]
    return {**tally.report(), "frames_relayed": frames, "frames_damaged": damaged,
            "failed_tx_per_damaged_frame": round(failed / max(sum(damaged.values()), 1), 2)}


def readdress(unit_from: int, unit_to: int) -> Transform:
    def change(frame: bytes) -> bytes:
        return encode("rtu", unit_to, frame[1:-2]) if frame[:1] == bytes([unit_from]) else frame
    return change


def wrong_function(unit: int) -> Transform:
    """The unit answers FC03 with an FC04 frame (valid CRC): input registers, which hold other values."""
    def change(frame: bytes) -> bytes:
        if frame[:2] == bytes([unit, 3]):
            data = frame[3:-2]
            inputs = b"".join(((int.from_bytes(data[i : i + 2], "big") + 1000) & 0xFFFF).to_bytes(2, "big")
                              for i in range(0, len(data) - 1, 2))
            return encode("rtu", unit, bytes([4, len(inputs)]) + inputs)
        return frame
    return change


def wrong_length(unit: int) -> Transform:
    """The unit answers FC03 with one register fewer than asked (consistent byte count, valid CRC)."""
    def change(frame: bytes) -> bytes:
        if frame[:2] == bytes([unit, 3]) and frame[2] >= 4:
            data = frame[3:-2][:-2]
            return encode("rtu", unit, bytes([3, len(data)]) + data)
        return frame
    return change


def scenario_bad_replies(name: str, cycles: int, kind: str) -> dict[str, Any]:
    transform = {"wrong_unit": readdress(3, 4), "wrong_function": wrong_function(3),
                 "wrong_length": wrong_length(3)}[kind]
    plan = cycle_plan((2, 3), cycles)
    with line(make_units((2, 3, 4)), on_reply=transform) as (port, _relay):
        tally, kinds = run_stack(name, port, plan)
    return {**tally.report(), "per_unit": per_unit(plan, kinds),
            "note": "unit 3's replies are altered; unit 2 is the control"}


def scenario_unplug(name: str) -> dict[str, Any]:
    """Poll unit 1 on a direct pty pair; pull the pair for 1.5 s, plug it back, poll until good again."""
    tmp = Path(tempfile.mkdtemp(prefix="fg-stack-"))
    pair = PtyPair(tmp, "line").plug()
    sims = [LineSimulator(str(pair.device), make_units((1,))).start()]
    tally = Tally()
    result: dict[str, Any] = {}

    async def main() -> None:
        stack = STACKS[name](str(pair.gateway))
        await stack.open()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(
            lambda _loop, ctx: tally.callback_exceptions.update([type(ctx.get("exception")).__name__]))
        tx: Tx = (1, "holding", 0, 6, TIMEOUT)
        try:
            for _ in range(20):
                await one(stack, tx, tally)
            sims[0].stop()
            await asyncio.to_thread(pair.pull)
            pulled = time.monotonic()
            during: Counter[str] = Counter()
            while time.monotonic() - pulled < 1.5:
                kind = await one(stack, tx, tally)
                during[kind] += 1
                if kind == "port_lost":
                    with contextlib.suppress(Exception):
                        await stack.recover()
                    await asyncio.sleep(0.1)
            await asyncio.to_thread(pair.plug)
            sims.append(LineSimulator(str(pair.device), make_units((1,))).start())
            plugged = time.monotonic()
            after: Counter[str] = Counter()
            while time.monotonic() - plugged < 15:
                kind = await one(stack, tx, tally)
                after[kind] += 1
                if kind == "good":
                    result["recovered_s_after_replug"] = round(time.monotonic() - plugged, 2)
                    break
                if kind == "port_lost":
                    with contextlib.suppress(Exception):
                        await stack.recover()
                    await asyncio.sleep(0.1)
            result["while_unplugged"] = dict(during)
            result["after_replug_until_good"] = dict(after)
            result.setdefault("recovered_s_after_replug", None)
        finally:
            stack.close()
            await asyncio.sleep(0.05)

    try:
        asyncio.run(main())
    finally:
        sims[-1].stop()
        pair.pull()
        shutil.rmtree(tmp, ignore_errors=True)
    rep = tally.report()
    return {**result, "wrong_values_accepted": rep["wrong_values_accepted"], "hung": rep["hung"],
            "escaped_exceptions": rep["escaped_exceptions"], "callback_exceptions": rep["callback_exceptions"]}


def scenario_port_lock(name: str) -> dict[str, Any]:
    """While the stack holds the port, does a second exclusive opener get refused?"""
    tmp = Path(tempfile.mkdtemp(prefix="fg-stack-"))
    pair = PtyPair(tmp, "line").plug()
    out: dict[str, Any] = {}

    async def main() -> None:
        stack = STACKS[name](str(pair.gateway))
        await stack.open()
        try:
            try:
                other = serial.Serial(str(pair.gateway), exclusive=True)
            except serial.SerialException as exc:
                out["second_opener_refused"], out["error"] = True, str(exc)[:120]
            else:
                other.close()
                out["second_opener_refused"] = False
        finally:
            stack.close()

    try:
        asyncio.run(main())
    finally:
        pair.pull()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    if shutil.which("socat") is None:
        print(json.dumps({"error": "socat is not installed"}))
        return 1
    logging.basicConfig(level=logging.CRITICAL)  # both stacks log every fault; the counts are the output
    cycles = args.cycles
    scenarios: dict[str, Callable[[str], dict[str, Any]]] = {
        "units8_dead_slow": lambda n: scenario_dead_and_slow(n, cycles),
        "late_replies": lambda n: scenario_late_replies(n, cycles * 2),
        "noise_5pct": lambda n: scenario_noise(n, cycles * 3, 0.05),
        "noise_20pct": lambda n: scenario_noise(n, cycles * 3, 0.20),
        "wrong_unit": lambda n: scenario_bad_replies(n, cycles, "wrong_unit"),
        "wrong_function": lambda n: scenario_bad_replies(n, cycles, "wrong_function"),
        "wrong_length": lambda n: scenario_bad_replies(n, cycles, "wrong_length"),
        "unplug_replug": scenario_unplug,
        "port_lock": scenario_port_lock,
    }
    only = [s for s in args.only.split(",") if s]
    result: dict[str, Any] = {"pymodbus": pymodbus_version, "baud": BAUD, "timeout_s": TIMEOUT,
                              "slow_timeout_s": SLOW_TIMEOUT, "python": sys.version.split()[0]}
    for label, run in scenarios.items():
        if only and label not in only:
            continue
        result[label] = {name: run(name) for name in STACKS}
        print(f"{label} done", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
