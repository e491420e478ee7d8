"""The one task that owns a Modbus bus: it alone talks on the port, one transaction at a time.

Scheduling. Every device has its own poll interval, timeout and retries. The next
device polled is the one due first, devices holding alarm inputs (``priority``) before
the others when several are due, and queued writes (sirens, set-points) before any poll.

Device states. ``online`` until a poll meets silence, then ``suspect`` (still polled at its
rate, but without retries), then after ``offline_after`` silent polls in a row ``offline``:
probed with a single request, the next probe after a quarter of the time the unit has been
silent (``PROBE_FRACTION``; never sooner than its poll interval, never later than ``probe_max``).
So a dead unit costs the line one timeout per probe, the probes thin out geometrically (×1.25
each: 19 in its first minute, 81 in its first hour against 12 000 polls at 300 ms) to one per
``probe_max``, and the healthy units keep their rate. Within a poll, a unit that does not
answer one block is not asked for its other blocks.

Noise is not death (issue 14: a healthy unit went 3–5 s unpolled under 30 % frame damage). What
an operator wants from a noisy line is the live units' values at their rate, flagged where a
frame was damaged, and the dead ones costing little; so the scheduler weighs each outcome by
what it proves:
- an answer (a Modbus exception included) proves the unit alive and its data path working;
- a garbled reply (bad CRC, truncated, a frame from another address, bytes after the reply)
  says something was on the line inside the unit's window. Usually that is the unit answering
  through noise; it can also be a noise burst or another unit mis-addressed. Either way it is
  no evidence that the unit is gone, so it never counts towards ``offline`` and breaks a run of
  silent polls; an offline unit that garbles goes back to ``suspect`` at its poll rate (one
  poll shows which it is). Its points are flagged ``bad_frame``;
- only silence counts towards ``offline``. Under noise a live unit is silent too (its request
  arrived damaged and it ignored it, or its reply was lost), so the back-off is tied to how long
  it has been silent, not to the number of failed probes: a unit last heard two seconds ago is
  probed again half a second later, one silent for four minutes once a minute.
  With doubling per failed probe, seven silent attempts in a row (a 2×10⁻⁴ chance per poll when
  30 % of attempts meet silence) left a live unit 4.95 s unasked at 300 ms; now 3 s unasked
  takes twelve (5×10⁻⁷; tests/unit/test_bus_noise.py).
The retries a device is configured with apply to a garbled reply as to silence, and only while
it is ``online``: ``retries: 0`` means the operator wants a damaged frame flagged, not hidden by a
good retry, and the line time a retry costs is the operator's to give.

Every failed read reports its points with a quality flag (``comm_fail``, ``bad_frame``,
``device_error``), never a repeated stale value. A port that vanishes is reopened with
back-off when it reappears; meanwhile every point reports ``comm_fail``.

The scheduler runs on ``time.monotonic`` only (a wall-clock step moves no poll); readings carry
the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field

from drivers.modbus.codec import Block, OutOfRange, decode_point, device_blocks, encode_point, plain_word
from drivers.modbus.config import DeviceConfig, ModbusRtuBus, ModbusTcpBus, PointConfig, inter_frame_gap
from drivers.modbus.frames import ExceptionReply, FrameError, read_request, write_request
from drivers.modbus.master import Master, NoAnswer
from drivers.ports.settings import SerialSettings
from drivers.ports.stream import PortLost, Transport
from drivers.ports.tcp import TcpTransport
from gateway.contracts import stall_deadline
from gateway.shared import PointInfo, Progress, Quality, Reading, ReadingSink, Value, now

log = logging.getLogger("fieldgate.modbus")

WRITE_QUEUE = 16  # writes waiting for the line; more is a caller bug or a stuck bus
LOG_EVERY = 30.0  # seconds between repeated warnings of the same fault on one device
PROBE_FRACTION = 0.25  # an offline unit is probed after this fraction of the time it has been silent


class DeviceMode(enum.StrEnum):
    ONLINE = "online"
    SUSPECT = "suspect"
    OFFLINE = "offline"


class PollOutcome(enum.Enum):
    """What one poll proved about a unit (see the module docstring: noise is not death)."""

    ANSWERED = "answered"  # a usable reply or a Modbus exception
    GARBLED = "garbled"  # something came back inside its window, but not a valid reply
    SILENT = "silent"  # nothing (or a probe cut short by nothing)


class WriteError(Exception):
    """A write was refused, not answered, or its read-back did not match."""

    readback_mismatch = False


class ReadbackMismatch(WriteError):
    """The device acknowledged the write but reads back something else (a stuck relay)."""

    readback_mismatch = True


class DeviceFault(Exception):
    def __init__(self, quality: Quality, detail: str) -> None:
        super().__init__(detail)
        self.quality = quality


@dataclass
class DeviceState:
    config: DeviceConfig
    blocks: list[Block]
    mode: DeviceMode = DeviceMode.ONLINE
    next_due: float = 0.0
    failures: int = 0  # silent polls in a row
    probe_interval: float = 0.0
    last_heard: float = 0.0  # monotonic time of its last answer or garbled reply (or of the bus start)
    polls: int = 0
    good_polls: int = 0
    requests: int = 0
    last_logged: dict[str, float] = field(default_factory=dict)
    priority: bool = field(init=False)  # polled before ordinary devices; asked at every scheduling step
    # Per block, per point: (point, offset in the block, registers, plain_word kind): worked out once.
    layouts: list[list[tuple[PointConfig, int, int, str | None]]] = field(init=False)

    def __post_init__(self) -> None:
        self.priority = self.config.priority or any(p.priority for p in self.config.points)
        self.layouts = [[(p, p.address - b.start, p.register_count, plain_word(p)) for p in b.points]
                        for b in self.blocks]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def unit_id(self) -> int:
        return self.config.unit_id

    def finish_poll(self, t: float, outcome: PollOutcome) -> DeviceMode:
        """Record a poll's outcome and schedule the next one; returns the previous mode."""
        before = self.mode
        interval = self.config.poll_interval
        self.polls += 1
        if outcome is PollOutcome.SILENT:
            self.failures += 1
            if self.failures < self.config.offline_after:
                self.mode = DeviceMode.SUSPECT
                self.next_due = max(self.next_due + interval, t)
                return before
            self.mode = DeviceMode.OFFLINE
            silent_for = t - self.last_heard
            self.probe_interval = min(self.config.probe_max, max(interval, silent_for * PROBE_FRACTION))
            self.next_due = t + self.probe_interval
            return before
        self.last_heard, self.failures, self.probe_interval = t, 0, 0.0
        if outcome is PollOutcome.ANSWERED:
            self.good_polls += 1
            self.mode = DeviceMode.ONLINE
        elif before is DeviceMode.OFFLINE:
            self.mode = DeviceMode.SUSPECT  # alive after all: back to its rate, without retries
        # Fixed rate while heard so slow polls do not drift the cadence; never a burst to catch up.
        self.next_due = max(self.next_due + interval, t) if before is not DeviceMode.OFFLINE else t + interval
        return before

    def should_log(self, kind: str, t: float) -> bool:
        if t - self.last_logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self.last_logged[kind] = t
            return True
        return False


@dataclass
class _Write:
    device: DeviceState
    point: PointConfig
    values: list[int]
    verify: bool
    done: asyncio.Future[Value]


@dataclass
class _Probe:
    """A technician's raw read (status page), served by the bus task like a write."""

    unit_id: int
    table: str
    address: int
    count: int
    timeout: float
    done: asyncio.Future[list[int]]


class ModbusBus:
    """BusDriver for one TCP endpoint or one serial port."""

    writable = True

    def __init__(self, config: ModbusTcpBus | ModbusRtuBus) -> None:
        self.config = config
        self.name = config.name
        self.devices = [
            DeviceState(d, device_blocks(d.points, d.max_block, d.max_gap, d.coalesce)) for d in config.devices
        ]
        self._points = {p.id: (state, p) for state in self.devices for p in state.config.points}
        self._writes: asyncio.Queue[_Write | _Probe] = asyncio.Queue(WRITE_QUEUE)
        self._wake = asyncio.Event()
        self.master: Master | None = None
        self.connected = False

    def points(self) -> list[PointInfo]:
        return [PointInfo(p.id, p.unit, p.report) for d in self.config.devices for p in d.points]

    def device(self, name: str) -> DeviceState:
        return next(d for d in self.devices if d.config.name == name)

    @property
    def stall_deadline(self) -> float:
        devices = self.config.devices
        return stall_deadline(max((d.poll_interval for d in devices), default=0.0),
                              sum(d.timeout * (d.retries + 1) * 4 for d in devices))

    # --- transport -------------------------------------------------------------------

    def _make_master(self) -> Master:
        cfg = self.config
        if isinstance(cfg, ModbusTcpBus):
            timeout = max(d.timeout for d in cfg.devices)
            transport: Transport = TcpTransport(cfg.host, cfg.port, connect_timeout=max(2.0, timeout))
            return Master(transport, cfg.framer, gap=0.0)
        # pyserial (and termios) only for an RTU line: a Modbus TCP site does not load them (issue 18, idle memory).
        from drivers.ports.serialport import SerialTransport

        gap = inter_frame_gap(cfg.baud, cfg.bytesize, cfg.parity, cfg.stopbits) + cfg.frame_gap_margin
        return Master(SerialTransport(SerialSettings.of_bus(cfg)), cfg.framer, gap=gap)

    async def run(self, sink: ReadingSink, progress: Progress) -> None:
        backoff = self.config.reconnect_min
        while True:
            master = self._make_master()
            try:
                await master.transport.open()
            except PortLost as exc:
                log.warning("bus %s: %s; retrying in %.1fs", self.name, exc, backoff)
                await self._report_all(sink, Quality.COMM_FAIL)
                progress.beat()
                await self._idle(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max)
                continue
            log.info("bus %s: port open", self.name)
            backoff = self.config.reconnect_min
            self.master, self.connected = master, True
            try:
                await self._serve(master, sink, progress)
            except PortLost as exc:
                log.warning("bus %s: port lost: %s", self.name, exc)
                self.connected = False
                self._fail_writes("port lost")
                await self._report_all(sink, Quality.COMM_FAIL)
            finally:
                self.connected = False
                master.transport.close()

    async def _idle(self, seconds: float) -> None:
        """Sleep while the port is down, refusing writes that arrive meanwhile."""
        self._fail_writes("bus not connected")
        await asyncio.sleep(seconds)

    # --- scheduling ------------------------------------------------------------------

    async def _serve(self, master: Master, sink: ReadingSink, progress: Progress) -> None:
        start = time.monotonic()
        for device in self.devices:
            device.next_due = device.last_heard = start  # a unit silent from the start backs off from here
        while True:
            if not self._writes.empty():
                item = self._writes.get_nowait()
                if isinstance(item, _Probe):
                    await self._do_probe(master, item)
                else:
                    await self._do_write(master, item)
                progress.beat()
                continue
            t = time.monotonic()
            due = [d for d in self.devices if d.next_due <= t]
            if not due:
                self._wake.clear()
                wait = min(d.next_due for d in self.devices) - t
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: 3.11 can swallow a cancel
                        await self._wake.wait()
                progress.beat()
                continue
            device = min(due, key=lambda d: (not d.priority, d.next_due))
            outcome = await self._poll(master, device, sink)
            before = device.finish_poll(time.monotonic(), outcome)
            if device.mode is not before:
                level = logging.INFO if device.mode is DeviceMode.ONLINE else logging.WARNING
                log.log(level, "bus %s device %s unit %d: %s → %s", self.name, device.config.name,
                        device.config.unit_id, before, device.mode, extra={"device": device.config.name})
            progress.beat()

    async def _poll(self, master: Master, device: DeviceState, sink: ReadingSink) -> PollOutcome:
        """Read every block of ``device``; what the poll proved (a Modbus exception is an answer)."""
        cfg = device.config
        probing = device.mode is DeviceMode.OFFLINE
        # Retries are for a healthy unit's occasional lost frame; a unit that already failed a
        # poll gets one attempt per block, so it costs the line one timeout, not (retries + 1).
        retries = cfg.retries if device.mode is DeviceMode.ONLINE else 0
        outcome = PollOutcome.SILENT
        failed: DeviceFault | None = None
        for block, layout in zip(device.blocks, device.layouts, strict=True):
            if failed is not None:  # it did not answer: do not spend more line time on it this round
                await self._report(sink, block, failed.quality)
                continue
            try:
                words = await self._read(master, device, block, retries)
            except DeviceFault as fault:
                self._log_fault(device, block, fault)
                if fault.quality is Quality.DEVICE_ERROR:
                    outcome = PollOutcome.ANSWERED
                elif fault.quality is Quality.BAD_FRAME and outcome is PollOutcome.SILENT:
                    outcome = PollOutcome.GARBLED
                if fault.quality is Quality.COMM_FAIL or probing:
                    failed = fault
                await self._report(sink, block, fault.quality)
                continue
            outcome, probing = PollOutcome.ANSWERED, False
            await sink(self._readings(layout, words, now(), cfg.name))
        return outcome

    async def _read(self, master: Master, device: DeviceState, block: Block, retries: int) -> list[int]:
        request = read_request(block.table, block.start, block.count)
        words = await self._transact(master, device, request, retries)
        if len(words) < block.count:
            raise DeviceFault(Quality.BAD_FRAME, f"{len(words)} values for {block.count} asked")
        return words

    async def _transact(self, master: Master, device: DeviceState, request: bytes, retries: int) -> list[int]:
        last = DeviceFault(Quality.COMM_FAIL, "no attempt")
        for _attempt in range(retries + 1):
            device.requests += 1
            try:
                return await master.transact(device.config.unit_id, request, device.config.timeout)
            except NoAnswer:
                last = DeviceFault(Quality.COMM_FAIL, "no answer within the timeout")
            except FrameError as exc:
                last = DeviceFault(Quality.BAD_FRAME, f"bad reply: {exc}")
            except ExceptionReply as exc:
                raise DeviceFault(Quality.DEVICE_ERROR, str(exc)) from None
        raise last

    def _log_fault(self, device: DeviceState, block: Block, fault: DeviceFault) -> None:
        cfg = device.config
        quiet = device.mode is DeviceMode.OFFLINE or not device.should_log(fault.quality.value, time.monotonic())
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "bus %s device %s unit %d %s %d..%d: %s: %s", self.name, cfg.name, cfg.unit_id, block.table,
                block.start, block.start + block.count - 1, fault.quality, fault, extra={"device": cfg.name})

    @classmethod
    def _readings(cls, layout: list[tuple[PointConfig, int, int, str | None]], words: list[int], taken: float,
                  device: str) -> list[Reading]:
        """The readings of one block read; a plain 16-bit register (most points) without decode_point's checks."""
        out = []
        for point, offset, count, plain in layout:
            if plain == "uint16":
                out.append(Reading(point.id, words[offset], Quality.GOOD, taken, point.unit))
            elif plain == "int16":
                word = words[offset]
                value = word - 0x10000 if word & 0x8000 else word
                out.append(Reading(point.id, value, Quality.GOOD, taken, point.unit))
            else:
                out.append(cls._reading(point, words[offset : offset + count], taken, device))
        return out

    @staticmethod
    def _reading(point: PointConfig, words: list[int], taken: float, device: str) -> Reading:
        try:
            value = decode_point(point, words)
        except OutOfRange as exc:
            log.info("point %s: %s", point.id, exc, extra={"point": point.id, "device": device})
            return Reading(point.id, None, Quality.OUT_OF_RANGE, taken, point.unit)
        except (ValueError, IndexError) as exc:
            log.warning("point %s: cannot decode %s: %s", point.id, words, exc,
                        extra={"point": point.id, "device": device})
            return Reading(point.id, None, Quality.BAD_FRAME, taken, point.unit)
        return Reading(point.id, value, Quality.GOOD, taken, point.unit)

    async def _report(self, sink: ReadingSink, block: Block, quality: Quality) -> None:
        taken = now()
        await sink([Reading(point.id, None, quality, taken, point.unit) for point in block.points])

    async def _report_all(self, sink: ReadingSink, quality: Quality) -> None:
        for device in self.devices:
            for block in device.blocks:
                await self._report(sink, block, quality)

    # --- writes ----------------------------------------------------------------------

    async def write_point(self, point_id: str, value: float | bool | str, verify: bool = True) -> Value:
        """Write ``value`` (engineering units) to a holding register or coil point.

        Served by the bus task between polls (never interleaved with another transaction).
        With ``verify`` the point is read back and must hold what was written; returns the
        read-back value (or the written one without verify). Raises WriteError.
        """
        found = self._points.get(point_id)
        if found is None:
            raise WriteError(f"bus {self.name} has no point '{point_id}'")
        device, point = found
        if not point.writable:
            raise WriteError(f"point '{point_id}' is not writable ({point.table}"
                             f"{', bit field' if point.bit is not None else ''}{', enum' if point.enum else ''})")
        if isinstance(value, int | float) and not isinstance(value, bool) and (
            (point.valid_min is not None and value < point.valid_min)
            or (point.valid_max is not None and value > point.valid_max)
        ):
            raise WriteError(f"point '{point_id}': {value} is outside {point.valid_min}..{point.valid_max}")
        try:
            values = [int(bool(value))] if point.table == "coil" else encode_point(point, value)
        except (ValueError, TypeError) as exc:
            raise WriteError(f"point '{point_id}': {exc}") from None
        if not self.connected:
            raise WriteError(f"bus {self.name} is not connected")
        done: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        try:
            self._writes.put_nowait(_Write(device, point, values, verify, done))
        except asyncio.QueueFull:
            raise WriteError(f"bus {self.name}: {WRITE_QUEUE} writes already waiting") from None
        self._wake.set()
        cfg = device.config
        # The write waits for at most the transaction in progress, then its own attempts.
        slowest = max(d.timeout * (d.retries + 1) for d in self.config.devices)
        budget = slowest + (2 if verify else 1) * cfg.timeout * (cfg.retries + 1) * WRITE_QUEUE / 4 + 1.0
        try:
            return await asyncio.wait_for(asyncio.shield(done), budget)
        except TimeoutError:
            raise WriteError(f"point '{point_id}': bus {self.name} did not serve the write in {budget:.1f}s") from None

    async def _do_write(self, master: Master, write: _Write) -> None:
        if write.done.done():
            return
        point, device = write.point, write.device
        where = f"device {device.config.name} unit {device.config.unit_id} {point.table} {point.address}"
        try:
            request = write_request(point.table, point.address, write.values, device.config.write_multiple)
            await self._transact(master, device, request, device.config.retries)
            result: Value = bool(write.values[0]) if point.table == "coil" else decode_point(point, write.values)
            if write.verify:
                block = Block(point.table, point.address, point.register_count, (point,))
                words = await self._read(master, device, block, device.config.retries)
                if words[: point.register_count] != write.values:
                    raise ReadbackMismatch(f"{where}: read-back {words} after writing {write.values}")
                result = bool(words[0]) if point.table == "coil" else decode_point(point, words)
            log.info("bus %s %s: wrote %s to %s", self.name, where, write.values, point.id,
                     extra={"device": device.config.name, "point": point.id})
        except PortLost as exc:
            write.done.set_exception(WriteError(f"{where}: port lost: {exc}"))
            raise
        except DeviceFault as fault:
            write.done.set_exception(WriteError(f"{where}: {fault.quality}: {fault}"))
        except WriteError as exc:
            write.done.set_exception(exc)
        except ValueError as exc:
            write.done.set_exception(WriteError(str(exc)))
        else:
            write.done.set_result(result)
        finally:
            if write.done.done() and write.done.exception() is not None:
                log.warning("bus %s: write to %s failed: %s", self.name, point.id, write.done.exception(),
                            extra={"device": device.config.name, "point": point.id})

    async def probe(self, unit_id: int, table: str, address: int, count: int = 1) -> list[int]:
        """Read ``count`` raw registers or bits of any unit on this line, through the bus task.

        For the status page's technician probe: the running gateway stays the only master on the
        line. Raises ValueError for a request Modbus cannot express, LookupError when the bus is
        down or the unit does not answer.
        """
        read_request(table, address, count)  # validates the range before anything is queued
        if not self.connected:
            raise LookupError(f"bus {self.name} is not connected")
        known = next((d.config for d in self.devices if d.config.unit_id == unit_id), None)
        timeout = known.timeout if known else max(d.timeout for d in self.config.devices)
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        try:
            self._writes.put_nowait(_Probe(unit_id, table, address, count, timeout, done))
        except asyncio.QueueFull:
            raise LookupError(f"bus {self.name}: too many requests waiting") from None
        self._wake.set()
        slowest = max(d.timeout * (d.retries + 1) for d in self.config.devices)
        try:
            return await asyncio.wait_for(asyncio.shield(done), slowest * 2 + timeout + 1.0)
        except TimeoutError:
            raise LookupError(f"bus {self.name} did not serve the probe in time") from None

    async def _do_probe(self, master: Master, probe: _Probe) -> None:
        if probe.done.done():
            return
        try:
            request = read_request(probe.table, probe.address, probe.count)
            words = await master.transact(probe.unit_id, request, probe.timeout)
        except PortLost as exc:
            probe.done.set_exception(LookupError(f"port lost: {exc}"))
            raise
        except NoAnswer:
            probe.done.set_exception(LookupError(f"unit {probe.unit_id} did not answer within {probe.timeout}s"))
        except (FrameError, ExceptionReply, ValueError) as exc:
            probe.done.set_exception(LookupError(f"unit {probe.unit_id}: {exc}"))
        else:
            probe.done.set_result(list(words[: probe.count]))

    def _fail_writes(self, why: str) -> None:
        while not self._writes.empty():
            item = self._writes.get_nowait()
            if not item.done.done():
                error = LookupError if isinstance(item, _Probe) else WriteError
                item.done.set_exception(error(f"bus {self.name}: {why}"))
