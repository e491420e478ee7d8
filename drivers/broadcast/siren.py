"""Siren on a Modbus relay: cadence, read-back proof, and auto-off that does not need the event loop.

Three layers keep a siren from sounding forever:
1. the cadence thread stops at the activation deadline;
2. a separate `threading.Timer` (backstop) switches the coil off at the deadline even if the
   cadence thread is stuck in a request;
3. optionally the board's own auto-off register (``board_auto_off``), which works even if
   this process dies. Wire a maintenance key switch in series for the rest.

On a board with its own master (tcp/serial) layers 1 and 2 need no event loop. On a board
routed through a polled bus (``transport: bus``) every write is served by the bus task on the
event loop, so layers 1 and 2 can only *request* the OFF; layer 3 is then mandatory (config).

A cadence edge that fails (no answer, or the read-back differs) does not silence the siren for
the rest of the activation: the cadence carries on to its deadline, the first failure of the
activation is reported to the fault listener once, and the recovery is reported once when both
an ON and an OFF edge have been confirmed since the last failure (a relay stuck ON confirms
every ON write, so one good edge proves nothing). Every failed edge is counted in ``status()``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from drivers.broadcast.base import Activation, Cadence, FaultListener, OutputResult, OutputState, RelayError
from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import SirenRelayConfig
from drivers.broadcast.relay import make_relay


class SirenRelay:
    kind = "siren"

    def __init__(self, name: str, config: SirenRelayConfig,
                 coil_writers: Mapping[str, CoilWriter] | None = None) -> None:
        self.name = name
        self.config = config
        self.outdoor = config.outdoor
        self._relay = make_relay(config, coil_writers, config.board_auto_off)
        self._state = OutputState.IDLE
        self._stop = threading.Event()
        self._cadence_thread: threading.Thread | None = None
        self._backstop: threading.Timer | None = None
        self._alert_id: str | None = None
        self._last_readback: bool | None = None
        self._faults: collections.deque[str] = collections.deque(maxlen=20)
        self.forced_off_count = 0  # how often the backstop had to act (evidence of a stuck cadence)
        self.failed_edges = 0  # cadence edges not confirmed, over the output's life
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: FaultListener | None = None
        # Per activation: at most one fault report and one recovery report (no flood upstream).
        self._report_lock = threading.Lock()
        self._failing_since: float | None = None
        self._fault_reported = False
        self._recovery_reported = False
        self._edges_failed_now = 0
        self._confirmed_since_failure: set[bool] = set()

    def set_fault_listener(self, listener: FaultListener) -> None:
        self._listener = listener

    def _bind(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._relay.bind(self._loop)

    def _result(self, action: str, ok: bool, fault: str | None = None, **detail: Any) -> OutputResult:
        return OutputResult(self.name, action, ok, fault, dict(detail))

    async def prepare(self, activation: Activation) -> OutputResult:
        self._bind()
        if activation.cadence is None:
            return self._result("prepare", False, "no_cadence")
        try:
            readback = await asyncio.to_thread(self._relay.read_back)
        except RelayError as exc:
            return self._result("prepare", False, "board_unreachable", error=str(exc))
        return self._result("prepare", True, readback=readback)

    async def activate(self, activation: Activation) -> OutputResult:
        self._bind()
        cadence = activation.cadence
        if cadence is None or not cadence.steps:
            return self._result("activate", False, "no_cadence")
        await asyncio.to_thread(self._stop_threads)
        limit = min(self.config.max_activation_s, activation.max_activation_s, cadence.duration_s)
        with self._report_lock:
            self._failing_since, self._fault_reported, self._recovery_reported = None, False, False
            self._edges_failed_now = 0
            self._confirmed_since_failure.clear()
        self._stop.clear()
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
        self._cadence_thread = threading.Thread(
            target=self._run_cadence, args=(cadence, time.monotonic() + limit), name=f"siren-{self.name}",
            daemon=True,
        )
        self._cadence_thread.start()
        self._backstop = threading.Timer(limit + 0.5, self._force_off)
        self._backstop.daemon = True
        self._backstop.start()
        return self._result(
            "activate", True, coil=self.config.coil, readback=readback, pattern=cadence.name, limit_s=limit,
            route="bus" if self.config.board.transport == "bus" else "direct",
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
                if not first:
                    self._edge(True)
                first = False
                if self._stop.wait(min(on_s, max(0.0, deadline - time.monotonic()))):
                    return
                if off_s > 0:
                    self._edge(False)
                    if self._stop.wait(min(off_s, max(0.0, deadline - time.monotonic()))):
                        return
                if time.monotonic() >= deadline:
                    self._finish()
                    return
        self._finish()

    def _finish(self) -> None:
        """End of the cadence (pattern done or deadline): OFF, confirmed like any edge."""
        self._edge(False, final=True)
        if self._state is OutputState.ACTIVE:
            self._state = OutputState.IDLE

    def _edge(self, on: bool, final: bool = False) -> None:
        """One cadence edge. A failure is recorded and reported; the cadence goes on to its deadline."""
        if self._stop.is_set() and not final:
            return
        try:
            readback = self._relay.switch(on)
        except RelayError as exc:
            self._edge_failed("board_unreachable", str(exc), on)
            return
        self._last_readback = readback
        if on and self._stop.is_set():
            # Deactivate or the backstop ran while this ON was in flight: its OFF must be the last word.
            self._safe_off()
            return
        if readback is not None and readback != on:
            self._edge_failed("readback_mismatch", f"read-back {readback} after writing {on}", on)
            return
        self._edge_ok(on)

    def _edge_failed(self, fault: str, why: str, on: bool) -> None:
        self._faults.append(why)
        self._state = OutputState.FAULT
        with self._report_lock:
            self.failed_edges += 1
            self._edges_failed_now += 1
            self._confirmed_since_failure.clear()
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            report = not self._fault_reported
            self._fault_reported = True
        if report:
            self._emit(self._result("cadence", False, fault, alert_id=self._alert_id, coil=self.config.coil,
                                    edge="on" if on else "off", error=why))

    def _edge_ok(self, on: bool) -> None:
        with self._report_lock:
            since = self._failing_since
            if since is None:
                return
            self._confirmed_since_failure.add(on)
            if len(self._confirmed_since_failure) < 2:
                return
            self._failing_since = None
            report = not self._recovery_reported
            self._recovery_reported = True
            failed = self._edges_failed_now
        if self._state is OutputState.FAULT and not self._stop.is_set():
            self._state = OutputState.ACTIVE
        if report:
            self._emit(self._result("cadence", True, alert_id=self._alert_id, coil=self.config.coil,
                                    recovered=True, edge="on" if on else "off", failed_edges=failed,
                                    failing_s=round(time.monotonic() - since, 3)))

    def _emit(self, result: OutputResult) -> None:
        """Hand a mid-activation report to the listener on the event loop (from any thread)."""
        listener, loop = self._listener, self._loop
        if listener is None or loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed meanwhile (shutdown); the fault stays in status().
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(listener, result)

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
        self._edge(False, final=True)
        if self._state is OutputState.ACTIVE:
            self._state = OutputState.IDLE

    def _stop_threads(self) -> None:
        self._stop.set()
        if self._backstop is not None:
            self._backstop.cancel()
            self._backstop = None
        if self._cadence_thread is not None:
            self._cadence_thread.join(timeout=3 * self.config.board.wait_s + 2)
            self._cadence_thread = None

    async def deactivate(self) -> OutputResult:
        self._bind()
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
        self._bind()
        if not self._relay.can_read and self._state is not OutputState.ACTIVE:
            # No plain read on a shared bus: a verified OFF write proves the board answers and the relay is off.
            return await self._selftest_by_off_write()
        try:
            readback = await asyncio.to_thread(self._relay.read_back)
        except RelayError as exc:
            return self._result("selftest", False, "board_unreachable", error=str(exc))
        if readback and self._state is not OutputState.ACTIVE:
            return self._result("selftest", False, "relay_on_while_idle", readback=True)
        return self._result("selftest", True, readback=readback)

    async def _selftest_by_off_write(self) -> OutputResult:
        try:
            readback = await asyncio.to_thread(self._relay.switch, False)
        except RelayError as exc:
            return self._result("selftest", False, "board_unreachable", error=str(exc))
        if readback is True:
            return self._result("selftest", False, "relay_on_while_idle", readback=True, method="verified_off_write")
        return self._result("selftest", True, readback=readback, method="verified_off_write")

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self._state.value,
            "alert_id": self._alert_id,
            "readback": self._last_readback,
            "faults": list(self._faults),
            "forced_off": self.forced_off_count,
            "failed_edges": self.failed_edges,
            "route": "bus" if self.config.board.transport == "bus" else "direct",
        }

    async def close(self) -> None:
        self._bind()
        await asyncio.to_thread(self._stop_threads)
        await asyncio.to_thread(self._safe_off)
        await asyncio.to_thread(self._relay.close)
