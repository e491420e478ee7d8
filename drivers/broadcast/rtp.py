"""IP speakers: clips streamed as RTP (RFC 3550) G.711 mu-law, PT 0, 20 ms packets, to a multicast group."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import socket
import struct
from pathlib import Path
from typing import Any

from drivers.broadcast import g711, tts
from drivers.broadcast.base import OutputState
from drivers.broadcast.config import RtpMulticastConfig
from gateway.alerts.contract import Activation, OutputResult, ReportsInResults

PAYLOAD_TYPE = 0  # PCMU/8000, RFC 3551
PACKET_SAMPLES = 160  # 20 ms at 8 kHz
PACKET_S = PACKET_SAMPLES / g711.SAMPLE_RATE


def rtp_header(seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    return struct.pack(
        "!BBHII", 0x80, (0x80 if marker else 0) | PAYLOAD_TYPE, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )


class RtpMulticast(ReportsInResults):
    kind = "ip_speaker"

    def __init__(self, name: str, config: RtpMulticastConfig) -> None:
        self.name = name
        self.config = config
        self.outdoor = config.outdoor
        self._state = OutputState.IDLE
        self._payload: dict[str, bytes] = {}
        self._task: asyncio.Task[int] | None = None
        self._faults: collections.deque[str] = collections.deque(maxlen=20)
        self._sent = 0
        self._seq = secrets.randbelow(1 << 16)
        self._ssrc = secrets.randbits(32)

    def _result(self, action: str, ok: bool, fault: str | None = None, **detail: Any) -> OutputResult:
        return OutputResult(self.name, action, ok, fault, dict(detail))

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.config.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if self.config.interface:
            interface = socket.inet_aton(self.config.interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
        return sock

    async def prepare(self, activation: Activation) -> OutputResult:
        files = list(activation.clips)
        fault: str | None = None
        if activation.tts_text:
            try:
                rendered = await tts.render(activation.tts_text, self.config.tts, Path(self.config.work_dir))
                files.append(rendered)
            except tts.TtsError as exc:
                fault = "tts_failed"
                self._faults.append(str(exc))
        try:
            pcm = await asyncio.to_thread(self._encode, files, activation.max_activation_s)
        except g711.WavFormatError as exc:
            return self._result("prepare", False, "clip_unusable", error=str(exc))
        if not pcm:
            return self._result("prepare", False, fault or "nothing_to_play")
        self._payload.clear()  # one prepared stream at a time: bounded
        self._payload[activation.alert_id] = pcm
        return self._result("prepare", fault is None, fault, seconds=round(len(pcm) / g711.SAMPLE_RATE, 2))

    def _encode(self, files: list[Path], max_s: float) -> bytes:
        limit = min(max_s, self.config.max_activation)
        out = bytearray()
        for path in files:
            remaining = limit - len(out) / g711.SAMPLE_RATE
            if remaining <= 0:
                break
            out += g711.ulaw_encode(g711.read_mono_8k(path, remaining))
        return bytes(out)

    async def activate(self, activation: Activation) -> OutputResult:
        payload = self._payload.pop(activation.alert_id, None)
        if payload is None:
            prepared = await self.prepare(activation)
            payload = self._payload.pop(activation.alert_id, None)
            if payload is None:
                return self._result("activate", False, prepared.fault or "not_prepared")
        await self._stop()
        try:
            sock = self._socket()
        except OSError as exc:
            self._state = OutputState.FAULT
            return self._result("activate", False, "socket_failed", error=str(exc))
        self._state = OutputState.ACTIVE
        self._task = asyncio.create_task(self._stream(sock, payload))
        return self._result(
            "activate", True, group=self.config.group, port=self.config.port,
            packets=-(-len(payload) // PACKET_SAMPLES), ssrc=self._ssrc,
        )

    async def _stream(self, sock: socket.socket, payload: bytes) -> int:
        loop = asyncio.get_running_loop()
        timestamp = secrets.randbits(32)
        start = loop.time()
        sent = 0
        try:
            for index, offset in enumerate(range(0, len(payload), PACKET_SAMPLES)):
                # Absolute schedule: a late wake-up is caught up, not accumulated as drift.
                delay = start + index * PACKET_S - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                chunk = payload[offset : offset + PACKET_SAMPLES].ljust(PACKET_SAMPLES, b"\xff")
                packet = rtp_header(self._seq, timestamp, self._ssrc, marker=index == 0) + chunk
                try:
                    sock.sendto(packet, (self.config.group, self.config.port))
                    sent += 1
                except BlockingIOError:
                    self._faults.append("send buffer full: packet dropped")
                except OSError as exc:
                    self._faults.append(f"send failed: {exc}")
                    self._state = OutputState.FAULT
                    return sent
                self._seq = (self._seq + 1) & 0xFFFF
                timestamp += PACKET_SAMPLES
            self._state = OutputState.IDLE
            return sent
        finally:
            self._sent = sent
            sock.close()

    async def play_to_end(self) -> int:
        if self._task is None:
            return 0
        with contextlib.suppress(asyncio.CancelledError):
            return await self._task
        return self._sent

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def deactivate(self) -> OutputResult:
        await self._stop()
        if self._state is OutputState.ACTIVE:
            self._state = OutputState.IDLE
        return self._result("deactivate", True, packets_sent=self._sent)

    async def selftest(self) -> OutputResult:
        try:
            self._socket().close()
        except OSError as exc:
            return self._result("selftest", False, "socket_failed", error=str(exc))
        return self._result("selftest", True)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self._state.value,
                "faults": list(self._faults), "packets_sent": self._sent}

    async def close(self) -> None:
        await self._stop()
