"""The boot check of a software update on trial: ``python -m gateway.fleet.boot`` as the unit's ExecStartPre.

It runs from the *stable* side (the installed venv, ``/opt/fieldgate/venv``, which updates never touch),
so a release that cannot even start is still sent back. Every start while an update is on trial is
counted in ``<state_dir>/fleet/rollout.json``; the second start inside the window, or any start past the
deadline, flips ``<root>/current`` back to the release it came from and records ``rolled_back`` (the
daemon of that release journals it when it runs). The first start is the switch itself.

Standard library and gateway.fsutil only (no pydantic, no YAML): it must work whatever the new release
did, and fast. It edits rollout.json as a plain dict so that fields it does not know survive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from gateway.fsutil import fsync_dir, write_atomic

CURRENT = "current"


def flip_current(root: Path, slot: str) -> None:
    """Point ``root/current`` at ``root/slot`` atomically: a new link beside it, renamed over it."""
    link = root / CURRENT
    tmp = root / f".{CURRENT}.{os.getpid()}.new"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(slot, tmp)  # relative (a, b, ../venv): the root may be staged elsewhere
    os.replace(tmp, link)
    fsync_dir(root)


def current_slot(root: Path) -> str | None:
    """What ``current`` points at, relative to the root (``a``, ``b``, or ``../venv``: the installed release
    outside the root), or None without a link."""
    try:
        return os.readlink(root / CURRENT)
    except OSError:
        return None


def state_path(state_dir: Path) -> Path:
    return state_dir / "fleet" / "rollout.json"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(state_path(state_dir).read_bytes()[:1_000_000])
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def check(state_dir: Path, root: Path, now: float | None = None) -> str:
    """Count this start; go back when it is the second inside the window or past the deadline. Says what it did."""
    state = read_state(state_dir)
    if state is None or state.get("kind") != "update" or state.get("phase") != "trial":
        return "no update on trial"
    at = time.time() if now is None else now
    starts = int(state.get("starts") or 0) + 1
    deadline = state.get("deadline")
    late = isinstance(deadline, (int, float)) and at > deadline
    if starts < 2 and not late:
        state["starts"] = starts
        _save(state_dir, state, at)
        return f"update {state.get('to_version')} on trial: start {starts}"
    back = str(state.get("from_slot") or "../venv")
    flip_current(root, back)
    why = (f"the new release started {starts} times inside the health window (it crashed or was not healthy)"
           if not late else "the new release was not committed before the deadline of its health window")
    history = list(state.get("history") or [])[-7:]
    history.append({"phase": "rolled_back", "sha256": state.get("sha256"), "label": state.get("label"),
                    "reason": why, "at": round(at, 1)})
    state.update(phase="rolled_back", reason=why, deadline=None, starts=starts, unreported=True, history=history)
    _save(state_dir, state, at)
    return f"update {state.get('to_version')} rolled back to {back}: {why}"


def _save(state_dir: Path, state: dict[str, Any], at: float) -> None:
    state["at"] = at
    write_atomic(state_path(state_dir), json.dumps(state, sort_keys=True).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.fleet.boot", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--state-dir", default="/var/lib/fieldgate", help="the site's gateway.state_dir")
    parser.add_argument("--root", default="/opt/fieldgate/releases", help="the A/B root holding a, b and current")
    args = parser.parse_args(argv)
    try:
        print(f"fleet-boot: {check(Path(args.state_dir), Path(args.root))}", file=sys.stderr)
    except OSError as exc:
        # Never keep the site from starting: the daemon's own check is the second line.
        print(f"fleet-boot: could not check the update state: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
