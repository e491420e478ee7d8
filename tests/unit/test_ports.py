"""The port layer (drivers/ports/) on in-process pseudo-terminals and loopback TCP: what every bus and
satellite link relies on when a port opens, talks, stalls or vanishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
import serial

from drivers.modbus.config import inter_frame_gap
from drivers.modbus.tools import wire_seconds
from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import RS485Options, SerialSettings, bits_per_char, char_time
from drivers.ports.stream import BUFFER_LIMIT, PortBusy, PortLost
from drivers.ports.tcp import TcpTransport
from gateway.config.loader import load_site_text

LIMIT_S = 10.0  # bound of every wait for an event; never reached when the code is right


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(LIMIT_S * 2):
            await body()

    asyncio.run(bounded())


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """(the device end's fd, the path a port opens): a null-modem cable inside this process."""
    device, ours = os.openpty()
    path = os.ttyname(ours)
    try:
        yield device, path
    finally:
        for fd in (device, ours):
            with contextlib.suppress(OSError):
                os.close(fd)


def soon() -> float:
    return time.monotonic() + LIMIT_S


@contextlib.asynccontextmanager
async def opened(settings: SerialSettings) -> AsyncIterator[SerialTransport]:
    port = SerialTransport(settings)
    await port.open()
    try:
        yield port
    finally:
        port.close()


def device_reads(device: int, n: int) -> bytes:
    got = b""
    while len(got) < n:
        got += os.read(device, n - len(got))
    return got


# --- character time ---------------------------------------------------------------------


def test_character_time_counts_start_data_parity_and_stop_bits() -> None:
    assert bits_per_char(8, "N", 1) == 10 and bits_per_char(7, "E", 2) == 11 and bits_per_char(8, "O", 2) == 12
    assert char_time(9600) == 10 / 9600
    assert SerialSettings("/dev/x", 9600, "E").char_time == char_time(9600, 8, "E", 1) == 11 / 9600
    assert inter_frame_gap(9600, parity="E") == pytest.approx(3.5 * 11 / 9600)
    assert inter_frame_gap(38400) == 0.00175


def test_line_time_of_probe_planning_and_of_the_transport_agree() -> None:
    site = load_site_text(
        "gateway: {id: t}\nbuses:\n  - type: modbus_rtu\n    name: line\n    port: /dev/x\n    baud: 9600\n"
        "    parity: E\n    devices: [{name: d, points: [{id: p, address: 0}]}]\n")
    bus = site.buses[0]
    settings = SerialSettings.of_bus(bus)  # type: ignore[arg-type]
    assert (settings.port, settings.baud, settings.parity, settings.rs485) == ("/dev/x", 9600, "E", None)
    gap = inter_frame_gap(9600, 8, "E", 1) + bus.frame_gap_margin  # type: ignore[union-attr]
    # FC03 of one register: 8-byte request, 7-byte reply, two gaps
    assert wire_seconds("holding", 1, bus) == pytest.approx(15 * settings.char_time + 2 * gap)  # type: ignore[arg-type]


# --- a serial port ----------------------------------------------------------------------


def test_serial_port_talks_both_ways_and_counts_line_time(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 9600)) as port:
            before = time.monotonic()
            await port.send(b"\x01\x03\x00\x00\x00\x01\x84\x0a")
            assert device_reads(device, 8) == b"\x01\x03\x00\x00\x00\x01\x84\x0a"
            assert port.last_activity >= before + 8 * 10 / 9600  # busy until the last character left
            os.write(device, b"\x01\x03\x02")
            while len(port.peek()) < 3:
                assert await port.wait_data(soon())
            port.consume(2)
            assert port.peek() == b"\x02" and port.bytes_received == 3 and port.bytes_sent == 8
            assert not await port.wait_data(time.monotonic())  # a deadline already passed: no wait
        assert port.lost == "closed"
        with pytest.raises(PortLost):
            await port.send(b"x")

    run(body)


def test_bytes_that_came_while_the_reader_was_away_are_reported_not_waited_past(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 19200)) as port:
            assert port.peek() == b""
            os.write(device, b"\x01\x03")
            while port.bytes_received < 2:  # noqa: ASYNC110 - the reader is away (a sink), the port fills
                await asyncio.sleep(0.01)
            assert await port.wait_data(time.monotonic() + 1.0)  # before the fix: cleared, 1 s, False
            assert not await port.wait_data(time.monotonic())  # told once: no longer new
            assert port.peek() == b"\x01\x03"

    run(body)


def test_bytes_due_in_the_same_loop_step_as_the_deadline_are_reported(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 19200)) as port:
            assert port.peek() == b""
            waiting = asyncio.create_task(port.wait_data(time.monotonic() + 0.05))
            await asyncio.sleep(0)  # the task waits now
            os.write(device, b"\x01")
            # A loaded machine holds the loop past the deadline: the next step runs the reader
            # callback and then the timeout, whose cancel wins the wait. The arrival still counts.
            time.sleep(0.2)  # noqa: ASYNC251 - deliberately hold the loop past the deadline
            assert await waiting
            assert port.peek() == b"\x01"

    run(body)


def test_stale_input_is_flushed_on_open(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        os.write(device, b"half a frame from before")
        async with opened(SerialSettings(path, 19200)) as port:
            os.write(device, b"fresh")
            while len(port.peek()) < 5:
                assert await port.wait_data(soon())
            assert port.peek() == b"fresh"

    run(body)


def test_stream_reader_takes_what_arrived(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 19200)) as port:
            os.write(device, b"$BDFKI,TXA,Y,Y,0,0000*1D\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                got += await port.read()
            assert got == b"$BDFKI,TXA,Y,Y,0,0000*1D\r\n"
            waiting = asyncio.create_task(port.read())
            await asyncio.sleep(0)
            waiting.cancel()  # a shutdown while the link waits for its modem
            with pytest.raises(asyncio.CancelledError):
                await waiting

    run(body)


def test_a_babbling_device_cannot_grow_the_buffer(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 115200)) as port:
            for _ in range(8):
                os.write(device, bytes(1000))
            while port.bytes_received < 8000:
                assert await port.wait_data(soon())
            assert len(port.peek()) == BUFFER_LIMIT

    run(body)


def test_a_vanished_device_is_a_lost_port(pty: tuple[int, str]) -> None:
    device, path = pty

    async def body() -> None:
        framed = SerialTransport(SerialSettings(path, 19200))
        await framed.open()
        os.close(device)  # the cable pulled: the other end of the pty is gone
        with pytest.raises(PortLost, match=path):
            while True:
                assert await framed.wait_data(soon())
        with pytest.raises(PortLost):
            await framed.read()
        with pytest.raises(PortLost):
            await framed.send(b"x")
        framed.close()

    run(body)


def test_an_adapter_gone_during_open_is_a_lost_port_with_its_descriptor_closed(
        pty: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _device, path = pty
    instances: list[serial.Serial] = []

    def vanish(self: serial.Serial) -> None:
        instances.append(self)
        raise serial.SerialException("device reports readiness to read but returned no data")

    monkeypatch.setattr(serial.Serial, "reset_input_buffer", vanish)

    async def body() -> None:
        with pytest.raises(PortLost, match="went away while opening"):
            await SerialTransport(SerialSettings(path, 9600)).open()

    run(body)
    assert len(instances) == 1 and not instances[0].is_open and instances[0].fd is None


def test_a_second_opener_is_refused_as_busy(pty: tuple[int, str]) -> None:
    _device, path = pty

    async def body() -> None:
        async with opened(SerialSettings(path, 9600)):
            with pytest.raises(PortBusy, match="in use by another process"):
                await SerialTransport(SerialSettings(path, 9600)).open()

    run(body)


def test_a_missing_device_is_a_lost_port() -> None:
    async def body() -> None:
        with pytest.raises(PortLost, match="cannot open /dev/fieldgate-no-such-port"):
            await SerialTransport(SerialSettings("/dev/fieldgate-no-such-port")).open()

    run(body)


def test_rs485_options_where_the_port_has_no_rs485_mode(pty: tuple[int, str], caplog: pytest.LogCaptureFixture) -> None:
    device, path = pty
    options = RS485Options(delay_before_tx=0.001, delay_before_rx=0.002)

    async def body() -> None:
        async with opened(SerialSettings(path, 9600, rs485=options)) as port:
            await port.send(b"ok")
            assert device_reads(device, 2) == b"ok"

    with caplog.at_level(logging.INFO, logger="fieldgate.ports"):
        run(body)
    assert any("RS-485 mode not supported here" in r.getMessage() for r in caplog.records)


def test_a_stuck_write_leaves_the_loop_running_and_then_loses_the_port(pty: tuple[int, str]) -> None:
    """Before: the Modbus transport wrote with pyserial's blocking write (the event loop stood still
    for up to 2 s: no alarm rule, no watchdog ping); the satellite links' port waited for ever."""
    _device, path = pty  # the device end never reads: the kernel's buffers fill up

    async def body() -> None:
        async with opened(SerialSettings(path, 115200, write_timeout=0.5)) as port:
            sending = asyncio.create_task(port.send(bytes(1 << 20)))
            await asyncio.sleep(0)  # one step of the sender: it must hand the loop back while it waits
            assert not sending.done()
            with pytest.raises(PortLost, match="write timed out"):
                await sending
            assert port.lost is not None and "write timed out" in port.lost

    run(body)


# --- TCP ----------------------------------------------------------------------------------


def test_tcp_port_talks_and_reports_the_peer_closing() -> None:
    async def body() -> None:
        peers: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await peers.put((reader, writer))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        host, tcp_port = server.sockets[0].getsockname()[:2]
        port = TcpTransport(host, tcp_port, connect_timeout=LIMIT_S)
        async with server:
            await port.open()
            reader, writer = await peers.get()
            await port.send(b"\x00\x01")
            assert await reader.readexactly(2) == b"\x00\x01"
            writer.write(b"reply")
            while len(port.peek()) < 5:
                assert await port.wait_data(soon())
            writer.close()
            with pytest.raises(PortLost, match="closed the connection"):
                while True:
                    await port.wait_data(soon())
            port.close()

    run(body)


def test_tcp_connection_refused_is_a_lost_port() -> None:
    async def body() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        host, free = server.sockets[0].getsockname()[:2]
        server.close()
        await server.wait_closed()
        with pytest.raises(PortLost, match=f"cannot connect to {host}:{free}"):
            await TcpTransport(host, free, connect_timeout=LIMIT_S).open()

    run(body)


def test_a_cancel_while_connecting_is_never_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bus being stopped while its TCP connection comes up must stop. Before: open() waited with
    asyncio.wait_for, which on Python 3.11 returns the connection when the cancel lands in the step the
    connection completes: the cancel was lost and the bus ran on (the daemon's stop path waits for it)."""
    real_open_connection = asyncio.open_connection
    connected = asyncio.Event()

    async def connect_then_signal(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        pair = await real_open_connection(host, port)
        connected.set()  # the test's cancel runs in the very next step
        return pair

    monkeypatch.setattr(asyncio, "open_connection", connect_then_signal)

    async def body() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        host, tcp_port = server.sockets[0].getsockname()[:2]
        port = TcpTransport(host, tcp_port, connect_timeout=LIMIT_S)
        async with server:
            opening = asyncio.create_task(port.open())
            await connected.wait()
            cancel_taken = opening.cancel()  # False: open() had already returned, nothing to cancel
            await asyncio.gather(opening, return_exceptions=True)
            port.close()
            assert opening.cancelled() == cancel_taken

    run(body)


def test_tcp_connect_timeout_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(asyncio, "open_connection", never)

    async def body() -> None:
        with pytest.raises(PortLost, match=r"cannot connect to 192\.0\.2\.1:502: timeout"):
            await TcpTransport("192.0.2.1", 502, connect_timeout=0.01).open()

    run(body)


def test_closing_the_port_ends_a_waiting_write_at_once(pty: tuple[int, str]) -> None:
    _device, path = pty  # nobody reads the device end

    async def body() -> None:
        port = SerialTransport(SerialSettings(path, 115200, write_timeout=LIMIT_S * 10))
        await port.open()
        sending = asyncio.create_task(port.send(bytes(1 << 20)))
        await asyncio.sleep(0)
        port.close()  # a link shutting down while its modem's line is stuck
        with pytest.raises(PortLost, match="closed while writing"):
            await sending

    run(body)
