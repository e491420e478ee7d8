"""Local PA: WAV clips (plus a TTS render) played through ALSA with a player command, amplifier on a relay."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.broadcast import tts
from drivers.broadcast.base import OutputState, RelayError, wav_path_ok
from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import AlsaAudioConfig
from drivers.broadcast.relay import make_relay
from gateway.alerts.contract import Activation, OutputResult, ReportsInResults


async def _finish(proc: asyncio.subprocess.Process) -> tuple[bytes, int]:
    """Wait for the player, keeping only the first 4 KiB of its stderr (bounded memory)."""
    kept = b""
    if proc.stderr is not None:
        while chunk := await proc.stderr.read(65536):
            kept += chunk[: max(0, 4096 - len(kept))]
    return kept, await proc.wait()


class AlsaAudio(ReportsInResults):
    kind = "audio"

    def __init__(self, name: str, config: AlsaAudioConfig,
                 coil_writers: Mapping[str, CoilWriter] | None = None) -> None:
        self.name = name
        self.config = config
        self.outdoor = config.outdoor
        self._amp = make_relay(config.amplifier, coil_writers) if config.amplifier is not None else None
        self._state = OutputState.IDLE
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._prepared: dict[str, tuple[Path, ...]] = {}
        self._faults: collections.deque[str] = collections.deque(maxlen=20)
        self._last: dict[str, Any] = {}

    def _bind(self) -> None:
        if self._amp is not None:
            self._amp.bind(asyncio.get_running_loop())

    def _result(self, action: str, ok: bool, fault: str | None = None, **detail: Any) -> OutputResult:
        return OutputResult(self.name, action, ok, fault, dict(detail))

    async def prepare(self, activation: Activation) -> OutputResult:
        """Check every clip and render the TTS part; only a fully checked playlist goes live."""
        missing = {str(p): why for p in activation.clips if (why := wav_path_ok(p)) is not None}
        if missing:
            return self._result("prepare", False, "clip_unusable", clips=missing)
        files = list(activation.clips)
        if activation.tts_text:
            try:
                rendered = await tts.render(activation.tts_text, self.config.tts, Path(self.config.work_dir))
                files.append(rendered)
            except tts.TtsError as exc:
                # Fixed clips still play: losing the spoken level is better than silence.
                self._faults.append(str(exc))
                self._prepared[activation.alert_id] = tuple(files)
                return self._result("prepare", False, "tts_failed", error=str(exc), files=len(files))
        if not files:
            return self._result("prepare", False, "nothing_to_play")
        self._prepared.clear()  # one prepared playlist at a time: bounded
        self._prepared[activation.alert_id] = tuple(files)
        return self._result("prepare", True, files=[p.name for p in files])

    async def activate(self, activation: Activation) -> OutputResult:
        self._bind()
        files = self._prepared.pop(activation.alert_id, None)
        if files is None:
            prepared = await self.prepare(activation)
            files = self._prepared.pop(activation.alert_id, None)
            if not files:
                return self._result("activate", False, prepared.fault or "not_prepared")
        await self._stop_playback()
        amp_readback: bool | None = None
        if self._amp is not None:
            try:
                amp_readback = await asyncio.to_thread(self._amp.switch, True)
            except RelayError as exc:
                self._faults.append(str(exc))
                return self._result("activate", False, "amplifier_unreachable", error=str(exc))
            if amp_readback is False:
                await asyncio.to_thread(self._amp_off_quietly)
                return self._result("activate", False, "amplifier_readback_mismatch")
            assert self.config.amplifier is not None
            await asyncio.sleep(self.config.amplifier.warmup)
        argv = self._argv(files)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            await asyncio.to_thread(self._amp_off_quietly)
            self._state = OutputState.FAULT
            return self._result("activate", False, "player_failed", error=str(exc))
        self._state = OutputState.ACTIVE
        self._task = asyncio.create_task(self._supervise(self._proc, activation.max_activation_s))
        return self._result(
            "activate", True, files=[p.name for p in files], amplifier_readback=amp_readback,
            pid=self._proc.pid,
        )

    async def play_to_end(self) -> dict[str, Any]:
        """Wait for the current playlist to finish (used for the all-clear, and by tests)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return dict(self._last)

    def _argv(self, files: tuple[Path, ...]) -> list[str]:
        argv: list[str] = []
        for arg in self.config.player:
            if arg == "{files}":
                # Absolute: a file name can never be read as an option of the player.
                argv.extend(os.path.abspath(p) for p in files)
            else:
                argv.append(arg.replace("{device}", self.config.device))
        return argv

    async def _supervise(self, proc: asyncio.subprocess.Process, limit: float) -> None:
        limit = min(limit, self.config.max_activation)
        try:
            stderr, code = await asyncio.wait_for(_finish(proc), limit)
            self._last = {"exit": code}
            if code != 0:
                self._faults.append(f"player exited {code}: {stderr.decode(errors='replace')[:200]}")
                self._state = OutputState.FAULT
            else:
                self._state = OutputState.IDLE
        except TimeoutError:
            self._last = {"exit": None, "cut_at_s": limit}
            await self._kill(proc)
            self._state = OutputState.IDLE
        finally:
            await asyncio.to_thread(self._amp_off_quietly)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def _stop_playback(self) -> None:
        if self._proc is not None:
            await self._kill(self._proc)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self._proc = None

    def _amp_off(self) -> bool | None:
        """The amplifier's read-back after OFF (None: no amplifier, or no read-back). Raises RelayError."""
        if self._amp is None:
            return None
        try:
            return self._amp.switch(False)
        except RelayError as exc:
            self._faults.append(f"amplifier OFF failed: {exc}")
            raise

    def _amp_off_quietly(self) -> None:
        """Best effort on error paths: the failure is already in the faults list."""
        with contextlib.suppress(RelayError):
            self._amp_off()

    async def deactivate(self) -> OutputResult:
        self._bind()
        await self._stop_playback()
        try:
            amp = await asyncio.to_thread(self._amp_off)
        except RelayError as exc:
            # The operator must not be told the PA is off when its amplifier never confirmed it.
            return self._result("deactivate", False, "amplifier_unreachable", error=str(exc))
        finally:
            if self._state is OutputState.ACTIVE:
                self._state = OutputState.IDLE
        if amp is True:
            return self._result("deactivate", False, "amplifier_readback_mismatch")
        return self._result("deactivate", True, amplifier_readback=amp)

    async def selftest(self) -> OutputResult:
        self._bind()
        if self._amp is not None:
            try:
                readback = await asyncio.to_thread(self._amp.read_back)
            except RelayError as exc:
                return self._result("selftest", False, "amplifier_unreachable", error=str(exc))
            return self._result("selftest", True, amplifier_readback=readback)
        return self._result("selftest", True)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self._state.value,
            "faults": list(self._faults),
            "last": self._last,
        }

    async def close(self) -> None:
        await self.deactivate()
        if self._amp is not None:
            await asyncio.to_thread(self._amp.close)
