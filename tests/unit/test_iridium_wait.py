"""The Iridium link's wait for the modem's reply (drivers/iridium/link.py ``_wait_data``) on a pty
(os.openpty, no outside process): bytes the reader has not looked at are reported, never waited past."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.iridium.config import IridiumConfig
from drivers.iridium.link import IridiumLink
from drivers.satlink import SendTimeout
from gateway.shared import NullProgress


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """(the modem end's fd, the path the link opens)."""
    modem, ours = os.openpty()
    try:
        yield modem, os.ttyname(ours)
    finally:
        for fd in (modem, ours):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def in_a_command(path: str) -> AsyncIterator[IridiumLink]:
    """The link's port open and its reader running, inside a command (the lock held: the reader leaves
    the lines to the command)."""
    link = IridiumLink(IridiumConfig(type="iridium_sbd", port=path), lambda _b: None)
    await link._port.open()
    reader = asyncio.create_task(link._read_loop(NullProgress()))
    try:
        async with link._lock:
            assert link._buf.next_line() is None  # the command looked: nothing yet
            yield link
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        link._port.close()


def test_a_reply_that_came_while_the_command_was_away_is_reported(pty: tuple[int, str]) -> None:
    modem, path = pty

    async def body() -> None:
        async with in_a_command(path) as link:
            os.write(modem, b"OK\r\n")
            while len(link._buf) < 4:  # noqa: ASYNC110 - the command is busy elsewhere; the reader feeds
                await asyncio.sleep(0.01)
            await link._wait_data(time.monotonic() + 1.0)  # before the fix: cleared, 1 s, SendTimeout
            assert link._buf.next_line() == "OK"
            with pytest.raises(SendTimeout):  # looked at: no longer new
                await link._wait_data(time.monotonic())

    asyncio.run(asyncio.wait_for(body(), 10))


def test_a_reply_fed_in_the_loop_step_of_the_deadline_is_reported(pty: tuple[int, str]) -> None:
    modem, path = pty

    async def body() -> None:
        async with in_a_command(path) as link:
            waiting = asyncio.create_task(link._wait_data(time.monotonic() + 0.05))
            await asyncio.sleep(0)  # the task waits now
            os.write(modem, b"OK\r\n")
            # A loaded machine holds the loop past the deadline: the port's callback, then the timeout
            # whose cancel wins the wait; the reader feeds the reply in the next step.
            time.sleep(0.2)  # noqa: ASYNC251 - deliberately hold the loop past the deadline
            await waiting  # before the fix: SendTimeout with the reply in the buffer
            assert link._buf.next_line() == "OK"

    asyncio.run(asyncio.wait_for(body(), 10))
