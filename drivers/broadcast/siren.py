"""Siren on a Modbus relay: cadence, read-back proof, and auto-off that does not need the event loop.

Three layers keep a siren from sounding forever:
1. the cadence thread stops at the activation deadline;
2. a separate `threading.Timer` (backstop) switches the coil off at the deadline even if the
   cadence thread is stuck in a request;
3. optionally the board's own auto-off register (``board_auto_off``), which works even if
   this process dies. Wire a maintenance key switch in series for the rest.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

from drivers.broadcast.base import Activation, Cadence, OutputResult, OutputState
from drivers.broadcast.config import SirenRelayConfig
from drivers.broadcast.relay import RelayCoil, RelayError


class SirenRelay:
    kind = "siren"

    def __init__(self, name: str, config: SirenRelayConfig) -> None:
        self.name = name
        self.config = config
        self.outdoor = config.outdoor
        self._relay = RelayCoil(config)
        self._state = OutputState.IDLE
        self._stop = threading.Event()
        self._cadence_thread: threading.Thread | None = None
        self._backstop: threading.Timer | None = None
        self._alert_id: str | None = None
        self._last_readback: bool | None = None
        self._faults: collections.deque[str] = collections.deque(maxlen=20)
        self.forced_off_count = 0  # how often the backstop had to act (evidence of a stuck cadence)

    def _result(self, action: str, ok: bool, fault: str | None = None, **detail: Any) -> OutputResult:
        return OutputResult(self.name, action, ok, fault, dict(detail))

    async def prepare(self, activation: Activation) -> OutputResult:
        if activation.cadence is None:
            return self._result("prepare", False, "no_cadence")
        try:
            readback = await asyncio.to_thread(self._relay.read_back)
        except RelayError as exc:
            return self._result("prepare", False, "board_unreachable", error=str(exc))
        return self._result("prepare", True, readback=readback)

    async def activate(self, activation: Activation) -> OutputResult:
        cadence = activation.cadence
        if cadence is None or not cadence.steps:
            return self._result("activate", False, "no_cadence")
        await asyncio.to_thread(self._stop_threads)
        limit = min(self.config.max_activation_s, activation.max_activation_s, cadence.duration_s)
        try:
            readback = await asyncio.to_thread(self._start, limit)
        except RelayError as exc:
            self._state = OutputState.FAULT
            self._faults.append(str(exc))
            await asyncio.to_thread(self._safe_off)
            return self._result("activate", False, "board_unreachable", error=str(exc))
        self._alert_id = activation.alert_id
        self._last_readback = readback
        if readback is False:
            # Written but not switched: stuck relay, blown coil, or siren power missing (current sense).
            self._state = OutputState.FAULT
            self._faults.append("read-back did not confirm ON")
            await asyncio.to_thread(self._safe_off)
            return self._result("activate", False, "readback_mismatch", coil=self.config.coil, readback=False)
        self._state = OutputState.ACTIVE
        self._stop.clear()
        self._cadence_thread = threading.Thread(
            target=self._run_cadence, args=(cadence, time.monotonic() + limit), name=f"siren-{self.name}",
            daemon=True,
        )
        self._cadence_thread.start()
        self._backstop = threading.Timer(limit + 0.5, self._force_off)
        self._backstop.daemon = True
        self._backstop.start()
        return self._result(
            "activate", True, coil=self.config.coil, readback=readback, pattern=cadence.name, limit_s=limit
        )

    def _start(self, limit: float) -> bool | None:
        if self.config.board_auto_off is not None:
            self._relay.arm_board_auto_off(self.config.board_auto_off, limit)
        return self._relay.switch(True)

    def _run_cadence(self, cadence: Cadence, deadline: float) -> None:
        # The first ON was written by activate(); this thread continues from there.
        first = True
        for _ in range(cadence.repeat):
            for on_s, off_s in cadence.steps:
                if not first and not self._set(True):
                    return
                first = False
                if self._stop.wait(min(on_s, max(0.0, deadline - time.monotonic()))):
                    return
                if off_s > 0:
                    if not self._set(False):
                        return
                    if self._stop.wait(min(off_s, max(0.0, deadline - time.monotonic()))):
                        return
                if time.monotonic() >= deadline:
                    self._safe_off()
                    self._state = OutputState.IDLE
                    return
        self._safe_off()
        self._state = OutputState.IDLE

    def _set(self, on: bool) -> bool:
        """One cadence edge; False stops the cadence (fault recorded, coil forced off)."""
        if self._stop.is_set():
            return False
        try:
            readback = self._relay.switch(on)
        except RelayError as exc:
            self._faults.append(str(exc))
            self._state = OutputState.FAULT
            self._safe_off()
            return False
        self._last_readback = readback
        if readback is not None and readback != on:
            self._faults.append(f"read-back {readback} after writing {on}")
            self._state = OutputState.FAULT
            self._safe_off()
            return False
        return True

    def _safe_off(self) -> bool | None:
        try:
            readback = self._relay.switch(False)
        except RelayError as exc:
            self._faults.append(f"OFF failed: {exc}")
            return None
        self._last_readback = readback
        return readback

    def _force_off(self) -> None:
        """Backstop timer: runs in its own thread, whatever the event loop is doing."""
        self._stop.set()
        if self._state is OutputState.ACTIVE:
            self.forced_off_count += 1
        self._safe_off()
        if self._state is OutputState.ACTIVE:
            self._state = OutputState.IDLE

    def _stop_threads(self) -> None:
        self._stop.set()
        if self._backstop is not None:
            self._backstop.cancel()
            self._backstop = None
        if self._cadence_thread is not None:
            self._cadence_thread.join(timeout=3 * self.config.board.timeout + 2)
            self._cadence_thread = None

    async def deactivate(self) -> OutputResult:
        await asyncio.to_thread(self._stop_threads)
        readback = await asyncio.to_thread(self._safe_off)
        if self._state is not OutputState.FAULT:
            self._state = OutputState.IDLE
        if readback is True:
            self._state = OutputState.FAULT
            return self._result(
                "deactivate", False, "readback_mismatch", coil=self.config.coil, readback=True
            )
        if readback is None and self.config.readback != "none":
            return self._result("deactivate", False, "board_unreachable", coil=self.config.coil)
        return self._result("deactivate", True, coil=self.config.coil, readback=readback)

    async def selftest(self) -> OutputResult:
        # Silent: read-back only. A click test needs siren power cut by a maintenance relay first.
        try:
            readback = await asyncio.to_thread(self._relay.read_back)
        except RelayError as exc:
            return self._result("selftest", False, "board_unreachable", error=str(exc))
        if readback and self._state is not OutputState.ACTIVE:
            return self._result("selftest", False, "relay_on_while_idle", readback=True)
        return self._result("selftest", True, readback=readback)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self._state.value,
            "alert_id": self._alert_id,
            "readback": self._last_readback,
            "faults": list(self._faults),
            "forced_off": self.forced_off_count,
        }

    async def close(self) -> None:
        await asyncio.to_thread(self._stop_threads)
        await asyncio.to_thread(self._safe_off)
        await asyncio.to_thread(self._relay.close)
