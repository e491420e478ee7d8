"""``fieldgate run CONFIG`` under cProfile, every thread profiled on its own, summaries written at exit.

py-spy cannot attach here (it does not find the interpreter of a pyenv build), so bench/ingest.py
``--cprofile DIR`` starts gateway variants through this instead. The event loop and the journal's
thread are profiled separately (cProfile sees only the thread that enabled it); on SIGTERM the gateway
stops as usual and ``DIR/<name>.<thread>.txt`` get the top functions by own time and by cumulative time.

    python bench/profiled_gateway.py OUTDIR NAME CONFIG
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
from pathlib import Path

TOP = 35


def summary(profile: cProfile.Profile, title: str) -> str:
    out = io.StringIO()
    out.write(f"# {title}\n\n## by own time\n")
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(TOP)
    out.write("\n## by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(TOP)
    return out.getvalue().replace(str(Path(__file__).resolve().parents[1]) + "/", "")


def main() -> int:
    outdir, name, config = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    outdir.mkdir(parents=True, exist_ok=True)
    profiles: list[tuple[str, cProfile.Profile]] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()
            profiles.append((self.name, profile))

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    from gateway.cli import main as fieldgate

    main_profile = cProfile.Profile()
    main_profile.enable()
    try:
        code = fieldgate(["run", config])
    finally:
        main_profile.disable()
        (outdir / f"{name}.event-loop.txt").write_text(summary(main_profile, f"{name}: event loop thread"))
        for thread, profile in profiles:
            label = thread.split("_")[0].replace(" ", "-")
            (outdir / f"{name}.{label}.txt").write_text(summary(profile, f"{name}: thread {thread}"))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
