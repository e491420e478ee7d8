"""kill -9 of the centre bridge while its writer thread commits: everything ``saved()`` confirmed is in the
state file after the restart (the service awaits it before it tells the broker or a card anything).

The bridge runs in a child process on a disk made slow (each COMMIT waits 30 ms: the writer groups what
queues meanwhile), taking a card's alarm every few milliseconds; after each ``saved()`` it prints how many it
had taken before the call. The child is killed with SIGKILL mid-stream, with changes queued and a commit
under way; a new bridge on the same file must hold at least the last count printed, each message once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from centre.satellite.bridge import Bridge
from centre.satellite.config import load_centre
from tests.hil.rig import ROOT
from tests.unit.test_satcentre import write_config

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]

CHILD = """
import asyncio, sys, time
from pathlib import Path

from centre.satellite.bridge import Bridge
from centre.satellite.config import load_centre
from tests.unit.test_satcentre import CARD, alarm

def slow_disk(statement):
    if statement.startswith("COMMIT"):
        time.sleep(0.03)

async def main():
    bridge = Bridge(load_centre(Path(sys.argv[1])))
    bridge.store._db.set_trace_callback(slow_disk)
    taken = 0

    async def take():
        nonlocal taken
        while True:
            taken += 1
            bridge.on_incoming(CARD, alarm(taken))
            await asyncio.sleep(0.003)

    taking = asyncio.create_task(take())
    while True:
        await asyncio.sleep(0.01)
        before = taken
        await bridge.store.saved()
        print(before, flush=True)

asyncio.run(main())
"""


def test_what_saved_confirmed_survives_a_kill_9(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="max_queued: 100000\n")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(config)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert child.stdout is not None
    confirmed = 0
    try:
        deadline = time.monotonic() + 30
        while confirmed < 200 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            confirmed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert confirmed >= 200, "the child did not get far enough"
    bridge = Bridge(load_centre(config))
    kept = bridge.unpublished
    seqs = []
    while (publication := bridge.next_publication()) is not None:
        seqs += publication.seqs
        bridge.published(publication)
    bridge.store.close()
    assert kept >= confirmed, (kept, confirmed)
    assert seqs == list(range(1, kept + 1))  # in order, each once: no torn or repeated group
