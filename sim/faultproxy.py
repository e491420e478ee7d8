"""A TCP fault proxy between the gateway and its broker: latency, resets, blackhole, half-open connections.

Run as its own process (the chaos soak, bench/soak.py, does):

    python -m sim.faultproxy --listen 18830 --upstream 127.0.0.1:1883 --control 18831

and steer it over the control port, one line per command, answered ``ok`` or ``error: …``:

- ``pass``: forward both ways (the default);
- ``latency MS``: every chunk, both ways, is held back MS milliseconds (order kept);
- ``reset``: every open connection is reset at once (RST, not FIN: SO_LINGER 0); new ones pass;
- ``blackhole``: nothing is forwarded any more, in either direction, and nothing is closed: open
  connections just go silent, new ones are accepted and go silent too (a dead route);
- ``halfopen``: the broker side of every connection is closed (the broker sees the client go), the
  gateway side is kept open and silent (the gateway's TCP connection looks alive), new ones likewise;
- ``status``: the mode and the number of open connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct

BUFFER = 65536


class FaultProxy:
    def __init__(self, listen_port: int, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.listen_port = listen_port
        self.upstream = upstream
        self.mode = "pass"
        self.latency = 0.0
        self.pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()

    async def serve(self, control_port: int) -> None:
        proxy = await asyncio.start_server(self._client, self.host, self.listen_port, reuse_address=True)
        control = await asyncio.start_server(self._control, self.host, control_port, reuse_address=True)
        async with proxy, control:
            await asyncio.gather(proxy.serve_forever(), control.serve_forever())

    # ---- the proxied connections ----

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode in ("blackhole", "halfopen"):
            await self._silent(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self.pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair))
        finally:
            self.pairs.discard(pair)
            for w in (writer, up_writer):
                _close(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]) -> None:
        while True:
            try:
                data = await reader.read(BUFFER)
            except OSError:
                data = b""
            if not data:
                if self.mode == "pass" or self.mode == "latency":
                    _close(writer)
                return
            if self.mode in ("blackhole", "halfopen"):
                continue  # swallowed
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if pair not in self.pairs:
                return
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accepted, read, never answered, never closed: until the mode changes or the client goes."""
        pair = (writer, None)
        self.pairs.add(pair)
        try:
            while await reader.read(BUFFER):
                pass
        except OSError:
            pass
        finally:
            self.pairs.discard(pair)
            _close(writer)

    # ---- the control port ----

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            words = line.decode(errors="replace").split()
            writer.write((self.command(words) + "\n").encode())
            await writer.drain()
        _close(writer)

    def command(self, words: list[str]) -> str:
        if not words:
            return "error: empty command"
        verb = words[0]
        if verb == "status":
            return f"ok {self.mode} latency={self.latency * 1000:.0f}ms connections={len(self.pairs)}"
        if verb == "pass":
            if self.mode in ("blackhole", "halfopen"):  # their streams lost bytes: they cannot go on
                self._reset_all()
            self.mode, self.latency = "pass", 0.0
        elif verb == "latency" and len(words) == 2 and words[1].isdigit():
            self.mode, self.latency = "latency", int(words[1]) / 1000
        elif verb == "reset":
            self._reset_all()
            self.mode, self.latency = "pass", 0.0
        elif verb == "blackhole":
            self.mode = "blackhole"
        elif verb == "halfopen":
            self.mode = "halfopen"
            for _client, upstream in list(self.pairs):
                if upstream is not None:
                    _close(upstream)
        else:
            return f"error: unknown command {' '.join(words)[:60]!r}"
        return "ok"


    def _reset_all(self) -> None:
        for client, upstream in list(self.pairs):
            _reset(client)
            if upstream is not None:
                _reset(upstream)
        self.pairs.clear()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


class FaultProxyControl:
    """The harness's side of the control port."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)

    def send(self, *words: object) -> str:
        with socket.create_connection(self.address, timeout=5) as sock:
            sock.sendall((" ".join(str(w) for w in words) + "\n").encode())
            answer = sock.makefile().readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"fault proxy: {answer}")
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    proxy = FaultProxy(args.listen, (host or "127.0.0.1", int(port)))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(proxy.serve(args.control))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
