"""The sd_notify protocol against a real unix datagram socket set as NOTIFY_SOCKET.

The listener plays systemd: it binds a datagram socket (a file in tmp, or an abstract name)
and reads what the gateway sends. Waits are bounded by WAIT_LIMIT_S as a failure guard only;
no assertion depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.shared import Progress
from gateway.systemd import (
    MAX_STATUS_CHARS,
    LivenessSupervisor,
    Notifier,
    clean_status,
    format_message,
    monotonic_usec,
    watchdog_interval,
)

WAIT_LIMIT_S = 20.0

Message = dict[str, str]


def parse(datagram: bytes) -> Message:
    fields: Message = {}
    for line in datagram.decode("utf-8").split("\n"):
        key, sep, value = line.partition("=")
        assert sep, f"malformed notify line {line!r}"
        fields[key] = value
    return fields


class NotifyListener:
    """Receives what a Notifier sends, as systemd would, and keeps it in order."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> list[Message]:
        """Everything queued now (a unix datagram is queued when sendto returns)."""
        new: list[Message] = []
        self.sock.setblocking(False)
        while True:
            try:
                new.append(parse(self.sock.recv(65536)))
            except BlockingIOError:
                break
        self.messages += new
        return new

    def wait_for(self, predicate: Callable[[Message], bool]) -> Message:
        """Block (bounded) until a message satisfying ``predicate`` arrives; return it."""
        give_up = time.monotonic() + WAIT_LIMIT_S
        while True:
            remaining = give_up - time.monotonic()
            assert remaining > 0, f"no matching notify message; got {self.messages}"
            self.sock.settimeout(remaining)
            try:
                message = parse(self.sock.recv(65536))
            except TimeoutError:
                continue
            self.messages.append(message)
            if predicate(message):
                return message


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[str, NotifyListener]]:
    path = str(tmp_path / "notify.sock")
    listener = NotifyListener(path)
    yield path, listener
    listener.close()


# --- message format -------------------------------------------------------------------


def test_status_is_one_bounded_line() -> None:
    assert clean_status("bus  rs485-1\nhung\r\n") == "bus rs485-1 hung"
    long = clean_status("x" * 5000)
    assert len(long) == MAX_STATUS_CHARS and long.endswith("…")


def test_format_rejects_what_would_corrupt_the_protocol() -> None:
    assert format_message({"READY": "1", "STATUS": "up"}) == b"READY=1\nSTATUS=up"
    with pytest.raises(ValueError, match="newline"):
        format_message({"STATUS": "a\nWATCHDOG=1"})
    with pytest.raises(ValueError, match="field name"):
        format_message({"ready": "1"})
    with pytest.raises(ValueError, match="bytes"):
        format_message({"STATUS": "x" * 5000})


# --- WATCHDOG_USEC / WATCHDOG_PID -----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "pid"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0


# --- Notifier, direct socket path -----------------------------------------------------


def test_ready_status_stopping_reach_the_socket(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path
    notifier = Notifier(path)
    assert notifier.backend == "socket"
    assert notifier.ready("polling 2 buses")
    assert notifier.status("backlog 0")
    assert notifier.watchdog()
    assert notifier.stopping("flushing journal")
    assert listener.drain() == [
        {"READY": "1", "STATUS": "polling 2 buses"},
        {"STATUS": "backlog 0"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "flushing journal"},
    ]


def test_abstract_namespace_socket() -> None:
    name = f"fieldgate-test-{uuid.uuid4().hex}"
    listener = NotifyListener("\0" + name)
    try:
        assert Notifier("@" + name).ready()
        assert listener.drain() == [{"READY": "1"}]
    finally:
        listener.close()


def test_reload_brackets_with_monotonic_time_and_always_ends_ready(
    notify_path: tuple[str, NotifyListener],
) -> None:
    path, listener = notify_path
    notifier = Notifier(path)
    before = monotonic_usec()
    with pytest.raises(RuntimeError), notifier.reload("reloading site.yaml"):
        raise RuntimeError("new config invalid")
    after = monotonic_usec()
    reloading, ready = listener.drain()
    assert reloading["RELOADING"] == "1" and reloading["STATUS"] == "reloading site.yaml"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert ready == {"READY": "1"}


def test_extend_timeout(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path
    assert Notifier(path).extend_timeout(12.5)
    assert listener.drain() == [{"EXTEND_TIMEOUT_USEC": "12500000"}]


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.backend == "none"
    assert notifier.ready("x") is False
    assert Notifier("relative/path.sock").enabled is False


def test_unreachable_socket_is_reported_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.DEBUG, logger="fieldgate.systemd"):
        assert [notifier.watchdog() for _ in range(5)] == [False] * 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "nobody-listens.sock" in warnings[0].getMessage()


@pytest.mark.timeout(60)
def test_full_receive_queue_never_blocks_the_sender(notify_path: tuple[str, NotifyListener]) -> None:
    # systemd not reading must cost pings, never stall the event loop: sends fail instead.
    path, _listener = notify_path
    notifier = Notifier(path)
    results = [notifier.watchdog() for _ in range(5000)]
    assert results[0] is True
    assert results[-1] is False


# --- Notifier, systemd-python path ----------------------------------------------------


def test_systemd_python_backend_reaches_the_same_socket(
    notify_path: tuple[str, NotifyListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("systemd.daemon", reason="systemd-python not installed; direct path tested above")
    path, listener = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier.from_env()
    assert notifier.backend == "systemd-python"
    assert notifier.ready("up")
    assert notifier.reloading()
    ready, reloading = listener.drain()
    assert ready == {"READY": "1", "STATUS": "up"}
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0


# --- LivenessSupervisor, driven tick by tick on a settable clock ----------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdogs(messages: list[Message]) -> int:
    return sum(1 for m in messages if m.get("WATCHDOG") == "1")


def test_pings_only_while_every_loop_beats(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path
    clock = FakeClock()
    supervisor = LivenessSupervisor(Notifier(path), watchdog_s=30.0, clock=clock)
    assert supervisor.period_s == 15.0
    bus: Progress = supervisor.register("bus:rs485-1", deadline_s=20.0)
    journal = supervisor.register("journal", deadline_s=5.0)

    assert supervisor.tick()  # both count as alive from registration
    clock.now += 4.0
    journal.beat()
    assert supervisor.tick()
    assert listener.drain() == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]

    clock.now += 17.0  # bus silent 21 s > 20 s; journal silent 17 s > 5 s
    journal.beat()
    assert not supervisor.tick()
    (status,) = listener.drain()
    assert "WATCHDOG" not in status
    assert "bus:rs485-1" in status["STATUS"] and "journal" not in status["STATUS"]

    clock.now += 1.0
    journal.beat()
    assert not supervisor.tick()
    assert listener.drain() == []  # still hung: no ping, no repeated status

    bus.beat()
    assert supervisor.tick()
    assert listener.drain() == [{"STATUS": "starting"}, {"WATCHDOG": "1"}]


def test_status_set_while_hung_is_shown_after_recovery(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path
    clock = FakeClock()
    supervisor = LivenessSupervisor(Notifier(path), watchdog_s=10.0, clock=clock)
    link = supervisor.register("link:mqtt", deadline_s=1.0)
    supervisor.ready("up: 1 link")
    clock.now += 2.0
    supervisor.tick()
    supervisor.set_status("backlog 12")  # must not hide the hung status
    link.beat()
    supervisor.tick()
    statuses = [m["STATUS"] for m in listener.drain() if "STATUS" in m]
    assert statuses[0] == "up: 1 link"
    assert statuses[1].startswith("HUNG: link:mqtt")
    assert statuses[2:] == ["backlog 12"]


def test_retired_loop_is_no_longer_watched() -> None:
    clock = FakeClock()
    supervisor = LivenessSupervisor(Notifier(None), watchdog_s=10.0, clock=clock)
    old = supervisor.register("bus:tcp-1", deadline_s=1.0)
    with pytest.raises(ValueError, match="already registered"):
        supervisor.register("bus:tcp-1", deadline_s=1.0)
    old.retire()
    new = supervisor.register("bus:tcp-1", deadline_s=5.0)
    old.retire()  # a stale handle must not remove its successor
    assert supervisor.loop_names == ["bus:tcp-1"]
    clock.now += 3.0
    assert supervisor.tick()
    new.retire()
    clock.now += 100.0
    assert supervisor.tick() and supervisor.loop_names == []


def test_invalid_deadlines_are_refused() -> None:
    supervisor = LivenessSupervisor(Notifier(None))
    with pytest.raises(ValueError):
        supervisor.register("x", deadline_s=0)
    with pytest.raises(ValueError):
        LivenessSupervisor(Notifier(None), watchdog_s=-1)


def test_without_watchdog_hung_loops_are_still_reported(
    notify_path: tuple[str, NotifyListener], caplog: pytest.LogCaptureFixture
) -> None:
    path, listener = notify_path
    clock = FakeClock()
    supervisor = LivenessSupervisor(Notifier(path), watchdog_s=None, clock=clock)
    assert supervisor.period_s == LivenessSupervisor.DEFAULT_PERIOD_S
    supervisor.register("vision", deadline_s=1.0)
    assert supervisor.tick()
    clock.now += 2.0
    with caplog.at_level(logging.ERROR, logger="fieldgate.systemd"):
        assert not supervisor.tick()
    (status,) = listener.drain()
    assert status["STATUS"].startswith("HUNG: vision")
    assert any("vision" in r.getMessage() for r in caplog.records)


def test_from_env_reads_socket_and_watchdog(notify_path: tuple[str, NotifyListener]) -> None:
    path, _ = notify_path
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}
    supervisor = LivenessSupervisor.from_env(env)
    assert supervisor.notifier.socket_path == path and supervisor.notifier.backend == "socket"
    assert supervisor.watchdog_s == 4.0 and supervisor.period_s == 2.0


# --- LivenessSupervisor.run() on a real event loop, loops that really hang ------------


async def wait_until(condition: Callable[[], bool], listener: NotifyListener) -> None:
    """Poll ``condition``, reading the socket meanwhile as systemd does (its queue is short)."""
    give_up = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        listener.drain()
        assert time.monotonic() < give_up, "condition never became true"
        await asyncio.sleep(0.005)


async def beating_loop(progress: Progress, hang: asyncio.Event) -> None:
    """A bus scheduler stand-in: progresses until told to hang, then waits for ever."""
    while not hang.is_set():
        progress.beat()
        await asyncio.sleep(0.002)
    await asyncio.Event().wait()  # stuck, as on a read that never returns


def test_watchdog_pings_stop_when_a_bus_scheduler_hangs(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path

    async def scenario() -> None:
        supervisor = LivenessSupervisor(Notifier(path), watchdog_s=0.02)  # pings every 10 ms
        bus_hang, journal_hang = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(beating_loop(supervisor.register("bus:rs485-1", 0.25), bus_hang)),
            asyncio.create_task(beating_loop(supervisor.register("journal", 0.25), journal_hang)),
        ]
        runner = asyncio.create_task(supervisor.run())
        supervisor.ready("up")

        # Pings arrive while every loop beats.
        await wait_until(lambda: supervisor.pings >= 5, listener)
        listener.drain()
        assert watchdogs(listener.messages) >= 5

        bus_hang.set()
        # Once overdue the bus stays overdue for good: it never beats again.
        await wait_until(lambda: any(o.name == "bus:rs485-1" for o in supervisor.overdue()), listener)
        ticks = supervisor.ticks
        await wait_until(lambda: supervisor.ticks >= ticks + 10, listener)
        listener.drain()
        seen = len(listener.messages)
        pings_then = supervisor.pings
        ticks = supervisor.ticks
        await wait_until(lambda: supervisor.ticks >= ticks + 10, listener)
        listener.drain()
        after = listener.messages[seen:]

        assert watchdogs(after) == 0 and supervisor.pings == pings_then
        last_status = [m["STATUS"] for m in listener.messages if "STATUS" in m][-1]
        assert last_status.startswith("HUNG: bus:rs485-1")
        assert "journal" not in last_status

        supervisor.stopping()
        await asyncio.wait_for(runner, WAIT_LIMIT_S)  # run() returns after STOPPING
        assert listener.drain()[-1] == {"STOPPING": "1", "STATUS": "stopping: flushing journal"}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_status_lost_to_a_full_queue_is_resent(notify_path: tuple[str, NotifyListener]) -> None:
    path, listener = notify_path
    clock = FakeClock()
    notifier = Notifier(path)
    supervisor = LivenessSupervisor(notifier, watchdog_s=10.0, clock=clock)
    supervisor.register("bus:rs485-1", deadline_s=1.0)
    while notifier.watchdog():  # systemd busy: fill its queue
        pass
    clock.now += 2.0
    assert not supervisor.tick()  # the HUNG status is lost
    listener.drain()
    assert not supervisor.tick()
    (status,) = listener.drain()
    assert status["STATUS"].startswith("HUNG: bus:rs485-1")
