"""Step the wall clock of one process (the daemon under test), not the machine's: libfaketime.

``FakeClock(path).env()`` is the environment that runs a child under libfaketime (``apt-get install faketime``)
with its wall clock offset by what ``path`` holds; ``step(seconds)`` rewrites it, and the child sees the step
within ``CACHE_S`` (libfaketime re-reads the file that often), like an NTP step or an operator's ``date -s``.

Its cost: libfaketime 0.9.10 wraps ``pthread_cond_timedwait``, which Python's GIL waits in, parsing its
settings at every call; with the daemon's few threads that took it from 2 % to 55–90 % of a core (perf: libc
``getenv``/``vfscanf`` under ``take_gil``), its polls to a third of their rate (``FAKETIME_NO_CACHE`` or a
1 s cache alike). So the soak runs the daemon under it only for the clock-step fault.

``CLOCK_MONOTONIC`` is left alone (``FAKETIME_DONT_FAKE_MONOTONIC``): a real step does not move it
either. The other processes of the rig keep the machine's true time.
"""

from __future__ import annotations

import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_S = 1  # seconds a step may take to reach the child
_CANDIDATES = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1",
               "/usr/lib/faketime/libfaketime.so.1")


def libfaketime() -> str | None:
    """The installed libfaketime, or None."""
    for pattern in _CANDIDATES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


class FakeClock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self.step(0.0)

    def env(self) -> dict[str, str]:
        library = libfaketime()
        if library is None:
            raise RuntimeError("libfaketime is not installed (apt-get install faketime); .ci/run installs it")
        return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_CACHE_DURATION": str(CACHE_S),
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                # time.sleep under this libfaketime: see sim/faketime_site/sitecustomize.py
                "PYTHONPATH": f"{ROOT / 'sim' / 'faketime_site'}:{ROOT}"}

    def step(self, offset: float) -> None:
        """From now on the child's wall clock reads true time + ``offset`` seconds."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.3f}\n")
        tmp.replace(self.path)  # never a half-written file: libfaketime reads it at every clock call
        self.offset = offset
