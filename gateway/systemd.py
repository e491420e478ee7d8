"""systemd integration: the sd_notify protocol and the liveness watchdog.

The unit runs with ``Type=notify`` and ``WatchdogSec=``. systemd then expects, on the
datagram socket named by ``$NOTIFY_SOCKET``:

* ``READY=1`` once config, journal and buses are up (start-up is not finished before);
* ``WATCHDOG=1`` at least every ``WatchdogSec``, or it restarts the service;
* ``STATUS=...`` free text shown by ``systemctl status``;
* ``RELOADING=1`` + ``MONOTONIC_USEC=`` when a reload starts and ``READY=1`` when it ends;
* ``STOPPING=1`` when shutdown starts (systemd stops the watchdog timer from then on).

A process whose event loop still turns can keep pinging while one of its tasks is stuck
for ever, so the ping is not sent from "some timer": :class:`LivenessSupervisor` sends it
only while every registered loop (bus schedulers, the journal writer, links, the vision
worker) has reported progress within its own deadline. A blocked event loop stops the
pings by construction, since the supervisor runs on that loop.

systemd-python's ``systemd.daemon.notify`` is used when it imports (it is libsystemd's
``sd_notify``); otherwise the protocol is spoken directly: one datagram of
newline-separated ``KEY=value`` assignments, an ``@`` prefix meaning the abstract namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("fieldgate.systemd")

# systemd reads one notification datagram into a buffer of PIPE_BUF bytes and drops longer ones.
MAX_DATAGRAM = 4096
# STATUS= is for a person reading `systemctl status`: one line, short.
MAX_STATUS_CHARS = 400
# sun_path is 108 bytes on Linux, including the terminating NUL for filesystem paths.
_MAX_SOCKET_PATH = 107
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")

Sender = Callable[[bytes], bool]


def _library_notify() -> Callable[[str], bool] | None:
    """systemd-python's notify, or None when the package is not installed."""
    try:
        from systemd import daemon
    except ImportError:
        return None
    notify: Callable[[str], bool] = daemon.notify
    return notify


def socket_address(path: str) -> str:
    """Turn a ``$NOTIFY_SOCKET`` value into an AF_UNIX address (``@name`` is abstract)."""
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


def valid_socket_path(path: str) -> bool:
    """sd_notify accepts only absolute paths or abstract names, and so do we."""
    return len(path) >= 2 and path[0] in "/@" and len(path.encode()) <= _MAX_SOCKET_PATH


def clean_status(text: str) -> str:
    """One printable line of bounded length: a newline would start a new assignment."""
    line = " ".join(text.split())
    if len(line) > MAX_STATUS_CHARS:
        line = line[: MAX_STATUS_CHARS - 1] + "…"
    return line


def format_message(fields: Mapping[str, str]) -> bytes:
    """Encode assignments as one notification datagram. Raises ValueError on a malformed field."""
    lines = []
    for key, value in fields.items():
        if not _KEY.match(key):
            raise ValueError(f"invalid sd_notify field name {key!r}")
        if "\n" in value:
            raise ValueError(f"sd_notify field {key} contains a newline")
        lines.append(f"{key}={value}")
    payload = "\n".join(lines).encode("utf-8")
    if not payload or len(payload) > MAX_DATAGRAM:
        raise ValueError(f"sd_notify message of {len(payload)} bytes (must be 1..{MAX_DATAGRAM})")
    return payload


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog period systemd asked for, in seconds, or None when there is none for us.

    Mirrors sd_watchdog_enabled(3): ``WATCHDOG_USEC`` must be a positive integer and, when
    ``WATCHDOG_PID`` is set, it must name this process (otherwise the variables were
    inherited from a parent and the watchdog is not ours).
    """
    env = os.environ if env is None else env
    raw_usec = env.get("WATCHDOG_USEC", "").strip()
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw_usec)
        return None
    if usec <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not positive", raw_usec)
        return None
    raw_pid = env.get("WATCHDOG_PID", "").strip()
    if raw_pid:
        try:
            watchdog_pid = int(raw_pid)
        except ValueError:
            log.warning("ignoring watchdog: WATCHDOG_PID=%r is not an integer", raw_pid)
            return None
        if watchdog_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000


class Notifier:
    """Sends sd_notify messages. Does nothing (and says so once) when not run by systemd.

    A send never raises and never blocks the event loop: a failure is logged and reported
    as False. Build it with :meth:`from_env` in the daemon.
    """

    def __init__(self, socket_path: str | None, *, library: Callable[[str], bool] | None = None) -> None:
        """``socket_path`` is a ``$NOTIFY_SOCKET`` value (``/path`` or ``@abstract``) or None.

        ``library`` is systemd-python's notify; it reads ``$NOTIFY_SOCKET`` itself, so pass it
        only when ``socket_path`` came from this process's environment.
        """
        if socket_path is not None and not valid_socket_path(socket_path):
            log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or @abstract name", socket_path)
            socket_path = None
        self.socket_path = socket_path
        self._library = library if socket_path is not None else None
        self._failing = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, use_library: bool = True) -> Notifier:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET") or None
        library = _library_notify() if use_library and env is os.environ else None
        return cls(path, library=library)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def backend(self) -> str:
        if self.socket_path is None:
            return "none"
        return "systemd-python" if self._library is not None else "socket"

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one message; True when it was handed to the socket."""
        if self.socket_path is None:
            return False
        payload = format_message(fields)
        try:
            sent = self._send_library(payload) if self._library is not None else self._send_direct(payload)
        except OSError as exc:
            self._report_failure(exc)
            return False
        if sent and self._failing:
            log.info("sd_notify to %s works again", self.socket_path)
            self._failing = False
        return sent

    def _send_library(self, payload: bytes) -> bool:
        assert self._library is not None
        return bool(self._library(payload.decode("utf-8")))

    def _send_direct(self, payload: bytes) -> bool:
        assert self.socket_path is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # MSG_DONTWAIT: a full receive queue must cost one ping, not a stalled event loop.
            sock.sendto(payload, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, socket_address(self.socket_path))
        return True

    def _report_failure(self, exc: OSError) -> None:
        # First failure loud, repeats quiet: the watchdog pings every few seconds.
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "sd_notify to %s failed: %s", self.socket_path, exc)
        self._failing = True

    def ready(self, status: str | None = None) -> bool:
        return self.send(_with_status({"READY": "1"}, status))

    def status(self, text: str) -> bool:
        return self.send({"STATUS": clean_status(text)})

    def watchdog(self) -> bool:
        return self.send({"WATCHDOG": "1"})

    def stopping(self, status: str | None = None) -> bool:
        return self.send(_with_status({"STOPPING": "1"}, status))

    def reloading(self, status: str | None = None) -> bool:
        # sd_notify(3): RELOADING=1 carries MONOTONIC_USEC so systemd can tell this reload apart.
        return self.send(_with_status({"RELOADING": "1", "MONOTONIC_USEC": str(monotonic_usec())}, status))

    def extend_timeout(self, seconds: float, status: str | None = None) -> bool:
        """Ask for more time in the current start/stop phase (e.g. a long journal flush)."""
        usec = max(1, round(seconds * 1_000_000))
        return self.send(_with_status({"EXTEND_TIMEOUT_USEC": str(usec)}, status))

    @contextlib.contextmanager
    def reload(self, status: str = "reloading configuration") -> Iterator[None]:
        """RELOADING=1 on entry, READY=1 on exit whatever happens inside.

        systemd keeps the unit in "reloading" until READY=1 arrives, so an invalid new config
        (kept out by the caller) must still end the reload.
        """
        self.reloading(status)
        try:
            yield
        finally:
            self.ready()


def _with_status(fields: dict[str, str], status: str | None) -> dict[str, str]:
    if status is not None:
        fields["STATUS"] = clean_status(status)
    return fields


@dataclass(slots=True)
class _Loop:
    name: str
    deadline_s: float
    last_beat: float


@dataclass(frozen=True, slots=True)
class Overdue:
    """A registered loop that has not beaten within its deadline."""

    name: str
    silent_s: float
    deadline_s: float


class LoopHandle:
    """What a loop holds to report progress: implements ``gateway.shared.Progress``.

    ``beat()`` is one clock read and one attribute store, so it is cheap enough for every
    poll cycle and safe to call from a worker thread (the vision worker).
    """

    __slots__ = ("_clock", "_loop", "_supervisor")

    def __init__(self, supervisor: LivenessSupervisor, loop: _Loop, clock: Callable[[], float]) -> None:
        self._supervisor = supervisor
        self._loop = loop
        self._clock = clock

    @property
    def name(self) -> str:
        return self._loop.name

    def beat(self) -> None:
        self._loop.last_beat = self._clock()

    def retire(self) -> None:
        """The loop ends on purpose (reload removed it): stop watching it."""
        self._supervisor.unregister(self._loop.name, self)


class LivenessSupervisor:
    """Pings the systemd watchdog only while every registered loop makes progress.

    Each loop registers with a deadline: the longest time it may go without a beat while
    healthy (e.g. a bus scheduler's worst poll cycle plus its timeouts, with margin). A loop
    counts as alive from the moment it registers. :meth:`run` checks every half watchdog
    period; while a loop is overdue it withholds ``WATCHDOG=1`` and sets ``STATUS=`` to name
    it, so systemd restarts the service after ``WatchdogSec`` and the journal says why.
    """

    # Without a systemd watchdog the check still runs, to log and report hung loops.
    DEFAULT_PERIOD_S = 10.0

    def __init__(
        self,
        notifier: Notifier,
        *,
        watchdog_s: float | None = None,
        period_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``watchdog_s`` is systemd's interval (see :func:`watchdog_interval`); None disables pings."""
        if watchdog_s is not None and watchdog_s <= 0:
            raise ValueError(f"watchdog interval must be positive, got {watchdog_s}")
        if period_s is not None and period_s <= 0:
            raise ValueError(f"check period must be positive, got {period_s}")
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.period_s = period_s or (watchdog_s / 2 if watchdog_s else self.DEFAULT_PERIOD_S)
        self._clock = clock
        self._loops: dict[str, _Loop] = {}
        self._handles: dict[str, LoopHandle] = {}
        self._hung: tuple[str, ...] = ()
        self._status = "starting"
        # The STATUS line the current state calls for and whether systemd got it: a send lost
        # to a full socket queue is retried on the next tick rather than left wrong.
        self._shown_status = ""
        self._status_delivered = True
        self._stopping = False
        self.ticks = 0
        self.pings = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> LivenessSupervisor:
        return cls(Notifier.from_env(env), watchdog_s=watchdog_interval(env), **kwargs)

    def register(self, name: str, deadline_s: float) -> LoopHandle:
        """Watch a loop; give it the returned handle as its ``Progress``."""
        if deadline_s <= 0:
            raise ValueError(f"loop {name!r}: deadline must be positive, got {deadline_s}")
        if name in self._loops:
            raise ValueError(f"loop {name!r} is already registered; retire the old handle first")
        loop = _Loop(name=name, deadline_s=deadline_s, last_beat=self._clock())
        handle = LoopHandle(self, loop, self._clock)
        self._loops[name] = loop
        self._handles[name] = handle
        return handle

    def unregister(self, name: str, handle: LoopHandle | None = None) -> None:
        """Stop watching ``name`` (only if it is still ``handle``'s registration, when given)."""
        if handle is not None and self._handles.get(name) is not handle:
            return
        self._loops.pop(name, None)
        self._handles.pop(name, None)

    @property
    def loop_names(self) -> list[str]:
        return sorted(self._loops)

    def overdue(self) -> list[Overdue]:
        now = self._clock()
        late = [
            Overdue(loop.name, now - loop.last_beat, loop.deadline_s)
            for loop in self._loops.values()
            if now - loop.last_beat > loop.deadline_s
        ]
        return sorted(late, key=lambda o: o.name)

    def set_status(self, text: str) -> None:
        """The daemon's own one-line status; shown whenever no loop is hung."""
        self._status = clean_status(text)
        if not self._hung:
            self._show(self._status)

    def ready(self, status: str) -> None:
        self._status = clean_status(status)
        self._shown_status = self._status
        self._status_delivered = self.notifier.ready(self._status) or not self.notifier.enabled

    def _show(self, text: str) -> None:
        self._shown_status = text
        self._status_delivered = self.notifier.status(text) or not self.notifier.enabled

    def stopping(self, status: str = "stopping: flushing journal") -> None:
        """STOPPING=1; no further pings (systemd disarms the watchdog once stopping)."""
        self._stopping = True
        self.notifier.stopping(status)

    def tick(self) -> bool:
        """One check: ping if every loop is alive. Returns whether all loops are alive."""
        self.ticks += 1
        if self._stopping:
            return False
        late = self.overdue()
        hung = tuple(o.name for o in late)
        if hung != self._hung:
            self._on_change(late)
            self._hung = hung
        elif not self._status_delivered:
            self._show(self._shown_status)
        if hung:
            return False
        if self.watchdog_s is not None and self.notifier.watchdog():
            self.pings += 1
        return True

    def _on_change(self, late: list[Overdue]) -> None:
        if not late:
            log.warning("all loops make progress again; watchdog pings resume")
            self._show(self._status)
            return
        detail = ", ".join(f"{o.name} (silent {o.silent_s:.0f}s, deadline {o.deadline_s:g}s)" for o in late)
        action = "watchdog withheld, restart pending" if self.watchdog_s is not None else "no watchdog"
        log.error("loop(s) stopped making progress: %s; %s", detail, action)
        names = ", ".join(o.name for o in late)
        self._show(f"HUNG: {names} made no progress within deadline; {action}")

    async def run(self) -> None:
        """Check and ping every ``period_s`` until :meth:`stopping` (or cancellation)."""
        while not self._stopping:
            self.tick()
            await asyncio.sleep(self.period_s)
