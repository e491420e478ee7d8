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

An OFF that is not confirmed (at the limit, or on deactivate) is retried in its own thread at a
doubling interval until the board confirms it or a later activate/deactivate/close takes over:
a single lost frame must not leave a siren sounding. Activate, deactivate and close each run
whole in one worker thread under one lock, so a caller that gives up on them (the subsystem's
output timeout cancels the coroutine, not the thread) cannot leave the relay ON without its
cadence and backstop, nor interleave an ON after a cancel's OFF.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from drivers.broadcast.base import OutputState, RelayError
from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import SirenRelayConfig
from drivers.broadcast.relay import make_relay
from gateway.alerts.contract import Activation, Cadence, FaultListener, OutputResult

log = logging.getLogger("fieldgate.broadcast")

OFF_RETRY_FIRST_S = 1.0
OFF_RETRY_MAX_S = 30.0


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
        self._off_retry: threading.Thread | None = None
        # Set to end the current activation's backstop and OFF retries (a newer operation took over).
        self._retire = threading.Event()
        self._op_lock = threading.Lock()  # activate / deactivate / close, one at a time, each whole
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
        limit = min(self.config.max_activation, activation.max_activation_s, cadence.duration_s)
        # One worker thread does the whole start; if our caller gives up, the thread still finishes it.
        return await asyncio.to_thread(self._activate_sync, activation, cadence, limit)

    def _activate_sync(self, activation: Activation, cadence: Cadence, limit: float) -> OutputResult:
        with self._op_lock:
            self._stop_threads()
            with self._report_lock:
                self._failing_since, self._fault_reported, self._recovery_reported = None, False, False
                self._edges_failed_now = 0
                self._confirmed_since_failure.clear()
            self._stop.clear()
            self._retire = threading.Event()
            self._alert_id = activation.alert_id
            # Armed before the first write: whatever happens to this start, an OFF comes at the limit.
            self._backstop = threading.Timer(limit + 0.5, self._force_off, args=(self._retire,))
            self._backstop.daemon = True
            self._backstop.start()
            try:
                readback = self._start(limit)
            except RelayError as exc:
                self._state = OutputState.FAULT
                self._faults.append(str(exc))
                self._switch_off()
                return self._result("activate", False, "board_unreachable", error=str(exc))
            self._last_readback = readback
            if readback is False:
                # Written but not switched: stuck relay, blown coil, or siren power missing (current sense).
                self._state = OutputState.FAULT
                self._faults.append("read-back did not confirm ON")
                self._switch_off()
                return self._result("activate", False, "readback_mismatch", coil=self.config.coil, readback=False)
            self._state = OutputState.ACTIVE
            self._cadence_thread = threading.Thread(
                target=self._run_cadence, args=(cadence, time.monotonic() + limit), name=f"siren-{self.name}",
                daemon=True,
            )
            self._cadence_thread.start()
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

    def _edge(self, on: bool, final: bool = False) -> bool:
        """One cadence edge; True if confirmed. A failure is recorded and reported; the cadence goes on."""
        if self._stop.is_set() and not final:
            return False
        try:
            readback = self._relay.switch(on)
        except RelayError as exc:
            self._edge_failed("board_unreachable", str(exc), on)
            return False
        self._last_readback = readback
        if on and self._stop.is_set():
            # Deactivate or the backstop ran while this ON was in flight: its OFF must be the last word.
            self._switch_off()
            return False
        if readback is not None and readback != on:
            self._edge_failed("readback_mismatch", f"read-back {readback} after writing {on}", on)
            return False
        self._edge_ok(on)
        return True

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

    def _switch_off(self) -> tuple[bool, bool | None]:
        """Write OFF: (the board answered, its read-back). Never raises."""
        try:
            readback = self._relay.switch(False)
        except RelayError as exc:
            self._faults.append(f"OFF failed: {exc}")
            return False, None
        self._last_readback = readback
        return True, readback

    def _off_confirmed(self) -> bool:
        answered, readback = self._switch_off()
        return answered and readback is not True

    def _retry_off(self, retire: threading.Event) -> None:
        """Keep writing OFF, at a doubling interval, until the board confirms it or ``retire`` is set."""
        delay = OFF_RETRY_FIRST_S
        while not retire.wait(delay):
            if self._off_confirmed():
                log.info("siren %s: OFF confirmed after retrying", self.name)
                return
            log.warning("siren %s: OFF still not confirmed; retrying in %.0f s", self.name,
                        min(delay * 2, OFF_RETRY_MAX_S))
            delay = min(delay * 2, OFF_RETRY_MAX_S)

    def _force_off(self, retire: threading.Event) -> None:
        """Backstop timer: runs in its own thread, whatever the event loop is doing."""
        if retire.is_set():
            return
        self._stop.set()
        if self._state is OutputState.ACTIVE:
            self.forced_off_count += 1
        confirmed = self._edge(False, final=True)
        if self._state is OutputState.ACTIVE:
            self._state = OutputState.IDLE
        if not confirmed:
            log.warning("siren %s: OFF at the activation limit not confirmed; retrying", self.name)
            self._retry_off(retire)

    def _stop_threads(self) -> None:
        """End the cadence, the backstop and any OFF retries (with the op lock held)."""
        self._stop.set()
        self._retire.set()
        join_s = 3 * self.config.board.wait_s + 2
        if self._backstop is not None:
            self._backstop.cancel()
            self._backstop.join(timeout=join_s)  # if it is running: let its OFF in flight land first
            self._backstop = None
        if self._off_retry is not None:
            self._off_retry.join(timeout=join_s)
            self._off_retry = None
        if self._cadence_thread is not None:
            self._cadence_thread.join(timeout=join_s)
            self._cadence_thread = None

    async def deactivate(self) -> OutputResult:
        self._bind()
        return await asyncio.to_thread(self._deactivate_sync)

    def _deactivate_sync(self) -> OutputResult:
        with self._op_lock:
            self._stop_threads()
            answered, readback = self._switch_off()
            if self._state is not OutputState.FAULT:
                self._state = OutputState.IDLE
            if answered and readback is not True:
                return self._result("deactivate", True, coil=self.config.coil, readback=readback)
            # Not confirmed: keep trying in the background until the board confirms (or a new activation).
            self._retire = threading.Event()
            self._off_retry = threading.Thread(target=self._retry_off, args=(self._retire,),
                                               name=f"siren-{self.name}-off", daemon=True)
            self._off_retry.start()
            if readback is True:
                self._state = OutputState.FAULT
                return self._result(
                    "deactivate", False, "readback_mismatch", coil=self.config.coil, readback=True
                )
            return self._result("deactivate", False, "board_unreachable", coil=self.config.coil)

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
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._op_lock:
            self._stop_threads()
            # Last chance before the process goes: a second OFF if the first was not confirmed.
            if not self._off_confirmed() and not self._off_confirmed():
                log.error("siren %s: OFF not confirmed at shutdown; check the relay", self.name)
            self._relay.close()
