"""A TCP connection as a port: Modbus TCP, or a serial server passing RTU/ASCII frames through."""

from __future__ import annotations

import asyncio

from drivers.ports.stream import PortLost, Transport


def _why(exc: Exception, silent: str) -> str:
    """The error's text, or ``silent`` for one that has none (a timeout)."""
    return str(exc) or silent


class TcpTransport(Transport):
    """A TCP connection (Modbus TCP, or a serial server passing RTU/ASCII frames through)."""

    def __init__(self, host: str, port: int, connect_timeout: float = 5.0) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):  # not wait_for: 3.11 can swallow a cancel
                reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise PortLost(f"cannot connect to {self.host}:{self.port}: {_why(exc, 'timeout')}") from None
        self._lost = None
        self.discard_input()  # and nothing is "new" from the last connection
        self._reader = reader
        self._pump = asyncio.create_task(self._read_loop(reader), name=f"tcp-{self.host}:{self.port}")

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    self._fail(f"{self.host}:{self.port} closed the connection")
                    return
                self._feed(data)
        except OSError as exc:
            self._fail(f"{self.host}:{self.port}: {exc}")

    async def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise PortLost("not connected")
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.connect_timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            why = f"{self.host}:{self.port}: {_why(exc, 'write timeout')}"
            self._fail(why)
            raise PortLost(why) from None

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._pump = None
        self._fail("closed")
