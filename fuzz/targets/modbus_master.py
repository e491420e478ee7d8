"""The Modbus master's reply handling (drivers/modbus/master.py) over a line that delivers fuzzed bytes:
up to three transactions in a row, so late replies, wrong units and leftovers meet the next request.

Documented errors of ``Master.transact``: NoAnswer, FrameError, ExceptionReply, PortLost. The line
answers at once (its ``wait_data`` never sleeps), so each transaction runs to completion without
an event loop.

Input: framing byte (bit 7: repair the first frame's check, as in modbus_reply), scenario byte,
chunk-size byte, then the bytes the line delivers.
"""

from __future__ import annotations

from collections import deque

from drivers.modbus.frames import ExceptionReply, FrameError, encode
from drivers.modbus.master import Master, NoAnswer
from drivers.ports.stream import PortLost, Transport
from fuzz.targets.modbus_reply import FRAMINGS, SCENARIOS, repaired  # the decoding cases' requests

NAME = "modbus_master"
COVERS = ("drivers/modbus/master.py", "drivers/modbus/frames.py")
CHUNKS = (1, 3, 8, 64, 1 << 20)
MAX_LEN = 2048


class FuzzLine(Transport):
    """Delivers one pre-cut chunk each time the master waits for data; silence once they run out."""

    def __init__(self, chunks: deque[bytes]) -> None:
        super().__init__()
        self.chunks = chunks

    async def open(self) -> None:
        return None

    def close(self) -> None:
        self._fail("closed")

    async def _write(self, data: bytes) -> None:
        return None

    async def wait_data(self, deadline: float) -> bool:
        self._check()
        if not self.chunks:
            return False
        self._feed(self.chunks.popleft())
        return True


def _run(master: Master, unit: int, request: bytes) -> list[int] | None:
    coro = master.transact(unit, request, 0.01)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except (NoAnswer, FrameError, ExceptionReply, PortLost):
        return None
    coro.close()
    raise AssertionError("the master waited on something other than the line")


def seeds() -> list[bytes]:
    out = []
    for i, s in enumerate(SCENARIOS[:64]):
        for k, kind in enumerate(FRAMINGS):
            good = encode(kind, s.unit, s.reply, tid=1)
            out.append(bytes([k, i, 4]) + good)
            out.append(bytes([k, i, 1]) + encode(kind, s.unit + 1, s.reply, tid=1) + good)  # a stray frame first
    return out


def fuzz_one(data: bytes) -> None:
    if len(data) < 3:
        return
    kind = FRAMINGS[data[0] % 3]
    scenario = SCENARIOS[data[1] % len(SCENARIOS)]
    step, stream = CHUNKS[data[2] % len(CHUNKS)], data[3:]
    if data[0] & 0x80:
        stream = repaired(kind, stream)
    line = FuzzLine(deque(stream[i : i + step] for i in range(0, len(stream), step)))
    master = Master(line, kind)  # type: ignore[arg-type]
    # the scenario's unit, another unit, then the first again: late replies land in the next transaction
    for unit in (scenario.unit, scenario.unit % 247 + 1, scenario.unit):
        words = _run(master, unit, scenario.request)
        if words is not None and scenario.block is not None:
            assert len(words) == scenario.block.count
