"""A multi-drop RS-485 line in software: several simulated units on one serial port, and a noise relay.

``LineSimulator`` answers Modbus RTU (or ASCII) requests for the ``SimUnit``s it holds,
one at a time like a real half-duplex line. A unit id that is not present, or is in
``dead``, is a dead unit (silence); ``SimUnit.delay`` makes a slow one. It uses the driver's own framing
code from the device side, and a frame it cannot parse is ignored (a real device does
the same on a CRC error).

``NoiseRelay`` sits between two pty pairs (socat cannot corrupt data) and damages a
configurable fraction of the frames passing in either direction: one flipped byte (a CRC
error), a truncated frame, a garbage frame, a reply re-addressed from another unit (valid
CRC), or a frame dropped; ``burst`` puts a burst of line noise on the gateway's side.
Seeded, so a failing run can be replayed. ``NoiseRelay.requests`` counts, per unit address, the
requests the gateway sent, read before any damage: what the gateway asked, whether or not the
unit received it intact (``SimUnit.requests`` counts the latter).
"""

from __future__ import annotations

import logging
import random
import select
import threading
import time
from dataclasses import dataclass, field

import serial

from drivers.modbus.frames import FC_TABLE, FrameError, FramerKind, decode, encode, pack_bits
from sim.modbus import SimUnit

log = logging.getLogger("fieldgate.sim.rs485")

QUIET = 0.02  # seconds of silence that end a partial frame on a pty (there is no baud-rate timing)


def _open(port: str) -> serial.Serial:
    return serial.Serial(port, baudrate=115200, timeout=0, exclusive=False)


def answer(unit: SimUnit, pdu: bytes) -> bytes:
    """The response PDU ``unit`` gives to request ``pdu`` (exceptions included)."""
    unit.requests += 1
    function = pdu[0]
    if unit.exception is not None:
        return bytes([function | 0x80, unit.exception])
    table = FC_TABLE.get(function)
    if table is None:
        return bytes([function | 0x80, 1])
    address = int.from_bytes(pdu[1:3], "big")
    data = unit.tables[table]
    if function in (1, 2, 3, 4):
        count = int.from_bytes(pdu[3:5], "big")
        if count < 1 or address + count > len(data):
            return bytes([function | 0x80, 2])
        values = data[address : address + count]
        if function in (1, 2):
            packed = pack_bits([bool(v) for v in values])
            return bytes([function, len(packed)]) + packed
        return bytes([function, 2 * count]) + b"".join(v.to_bytes(2, "big") for v in values)
    if function in (5, 6):
        raw = int.from_bytes(pdu[3:5], "big")
        if function == 5 and raw not in (0x0000, 0xFF00):
            return bytes([function | 0x80, 3])
        written = [1 if raw else 0] if function == 5 else [raw]
    else:
        count = int.from_bytes(pdu[3:5], "big")
        body = pdu[6:]
        if function == 15:
            written = [(body[i // 8] >> (i % 8)) & 1 for i in range(count)] if len(body) * 8 >= count else []
        else:
            written = [int.from_bytes(body[i : i + 2], "big") for i in range(0, 2 * count, 2)]
        if len(written) != count or len(body) != pdu[5]:
            return bytes([function | 0x80, 3])
    if address + len(written) > len(data):
        return bytes([function | 0x80, 2])
    unit.writes.append((table, address, written))
    if not (table == "coil" and unit.stuck_coils):
        data[address : address + len(written)] = written
    return pdu[:5]


@dataclass
class LineSimulator:
    """Serve ``units`` on the device end of a serial line, in a thread."""

    port: str
    units: list[SimUnit]
    framer: FramerKind = "rtu"
    ignored_frames: int = 0
    dead: set[int] = field(default_factory=set)  # unit ids that are present but do not answer (a dead unit)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def unit(self, unit_id: int) -> SimUnit:
        return next(u for u in self.units if u.unit_id == unit_id)

    def start(self) -> LineSimulator:
        self._serial = _open(self.port)
        self._thread = threading.Thread(target=self._run, name="line-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._serial.close()

    def _run(self) -> None:
        by_id = {u.unit_id: u for u in self.units}
        buf = b""
        fd = self._serial.fileno()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], QUIET)
                chunk = self._serial.read(4096) if ready else b""
            except (OSError, serial.SerialException, ValueError):
                time.sleep(0.05)  # the line was pulled (test of port loss); wait to be stopped
                continue
            if not chunk:
                if buf:  # silence after a partial frame: a real device drops it
                    self.ignored_frames += 1
                    buf = b""
                continue
            buf = (buf + chunk)[-1024:]
            while buf:
                try:
                    frame = decode(self.framer, buf, request=True)
                except FrameError:
                    self.ignored_frames += 1
                    buf = b""
                    break
                if frame is None:
                    break
                buf = buf[frame.consumed :]
                unit = by_id.get(frame.unit)
                if unit is None or frame.unit == 0 or frame.unit in self.dead:
                    continue  # not ours (a dead unit), or a broadcast
                if unit.delay:
                    time.sleep(unit.delay)
                reply = encode(self.framer, frame.unit, answer(unit, frame.pdu))
                try:
                    self._serial.write(reply)
                except (OSError, serial.SerialException):
                    break


@dataclass
class NoiseStats:
    frames: int = 0
    damaged: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class NoiseRelay:
    """Copy bytes between two serial ports, damaging ``rate`` of the frames (chunks) that pass."""

    KINDS = ("flip", "truncate", "garbage", "wrong_unit", "drop")

    def __init__(self, gateway_side: str, device_side: str, rate: float, seed: int = 1) -> None:
        self.a, self.b = _open(gateway_side), _open(device_side)
        self.rate = rate
        self.rng = random.Random(seed)
        self.stats = NoiseStats()
        self.bytes = {"to_devices": 0, "to_gateway": 0}
        self.requests: dict[int, int] = {}  # unit address -> requests the gateway sent it (before damage)
        self.noise_bytes = 0
        self._noise = bytearray()  # a burst waiting to go out (written by the relay thread only)
        self._noise_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="noise-relay", daemon=True)

    def start(self) -> NoiseRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.a.close()
        self.b.close()

    def burst(self, size: int) -> None:
        """Line noise (random bytes, no frame) towards the gateway, e.g. a motor starting next to the cable."""
        with self._noise_lock:
            self._noise += bytes(self.rng.randrange(256) for _ in range(size))

    def count_requests(self, chunk: bytes) -> None:
        """Count the whole request frames in ``chunk`` (from the gateway) by unit address.

        The relay reads a frame 2 ms after its first byte, so a request arrives whole; one split
        across two reads (a loaded machine) goes uncounted, an undercount the soak's 3 s stall
        limit (ten polls) absorbs.
        """
        while chunk:
            try:
                frame = decode("rtu", chunk, request=True)
            except FrameError:
                return
            if frame is None:
                return
            self.requests[frame.unit] = self.requests.get(frame.unit, 0) + 1
            chunk = chunk[frame.consumed :]

    def damage(self, frame: bytes) -> bytes:
        self.stats.frames += 1
        if self.rate <= 0 or self.rng.random() >= self.rate or not frame:
            return frame
        kind = self.rng.choice(self.KINDS)
        self.stats.damaged += 1
        self.stats.kinds[kind] = self.stats.kinds.get(kind, 0) + 1
        if kind == "flip":
            i = self.rng.randrange(len(frame))
            return frame[:i] + bytes([frame[i] ^ (1 << self.rng.randrange(8))]) + frame[i + 1 :]
        if kind == "truncate":
            return frame[: self.rng.randrange(len(frame))]
        if kind == "garbage":
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 2 * len(frame) + 2)))
        if kind == "wrong_unit" and len(frame) > 3:
            body = bytes([(frame[0] % 247) + 1]) + frame[1:-2]
            return encode("rtu", body[0], body[1:])
        return b""

    def _run(self) -> None:
        pairs = {self.a.fileno(): (self.a, self.b, "to_devices"), self.b.fileno(): (self.b, self.a, "to_gateway")}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(pairs), [], [], 0.05)
                with self._noise_lock:
                    noise, self._noise = bytes(self._noise), bytearray()
                if noise:
                    self.noise_bytes += len(noise)
                    self.a.write(noise)
                for fd in ready:
                    src, dst, direction = pairs[fd]
                    time.sleep(0.002)  # let the whole frame arrive: a pty write lands in one piece or two
                    chunk = src.read(4096)
                    self.bytes[direction] += len(chunk)
                    if direction == "to_devices":
                        self.count_requests(chunk)
                    out = self.damage(chunk)
                    if out:
                        dst.write(out)
            except (OSError, serial.SerialException, ValueError):
                time.sleep(0.05)
