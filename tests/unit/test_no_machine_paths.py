"""Nothing in the repository names the machine it was written on: shared material (the protocol vectors and
field notes in ``../shared`` beside the clone) is reached relative to the repository, so a clone anywhere
else (CI's, a developer's laptop) finds it the same way."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOT_OURS = {".git", ".venv", ".hypothesis", "build", "dist", "wheelhouse", "__pycache__", ".mypy_cache", ".ruff_cache",
            ".pytest_cache", ".fuzz", "demo-state", "state"}
# An absolute path to the shared folder ("<absolute>/shared/vectors"), not "../shared/..." or "shared/...".
ABSOLUTE_SHARED = re.compile(r"(?<![\w.])(/[\w.-]+)+/shared/(vectors|notes)\b")


def repository_text_files() -> list[Path]:
    found = []
    # os.walk, pruned: build/ may hold whole Debian roots (deploy/debian), with /proc mounted while built.
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in NOT_OURS and not d.endswith(".egg-info")]
        for name in files:
            if name in NOT_OURS:  # .git is a file in a worktree, naming where the main clone is
                continue
            path = Path(folder) / name
            try:
                path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # models, images: not text
            found.append(path)
    return found


def test_no_file_names_the_folder_this_clone_sits_in() -> None:
    here = f"{REPO.parent}/"
    assert here != "//"
    files = repository_text_files()
    assert len(files) > 100 and REPO / "config/devices/relay-board-4ch.yaml" in files
    named = [f"{p.relative_to(REPO)}:{n}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if here in line]
    assert named == []


def test_shared_material_is_reached_relative_to_the_repository() -> None:
    found = [f"{p.relative_to(REPO)}:{n}: {m.group(0)}" for p in repository_text_files()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             for m in ABSOLUTE_SHARED.finditer(line)]
    assert found == []
