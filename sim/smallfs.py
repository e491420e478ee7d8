"""A small file system that can be filled up: an ext4 image on a loop device (needs root), and a filler file.

Used by the full-disk test (tests/hil/test_durability.py) and the chaos soak (bench/soak.py): the daemon's state
directory lives on it, and filling it gives the journal a real ``SQLITE_FULL``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def mount_small_fs(tmp: Path, megabytes: int) -> Path | None:
    """A small ext4 file system on a loop device (needs root); None if this machine cannot."""
    return mount_small_fs_or_reason(tmp, megabytes)[0]


def mount_small_fs_or_reason(tmp: Path, megabytes: int) -> tuple[Path | None, str]:
    """Like ``mount_small_fs``, with why it could not be mounted (for a report that says what it skipped)."""
    image, mnt = tmp / "fs.img", tmp / "fs"
    mnt.mkdir()
    try:
        with open(image, "wb") as fh:
            fh.truncate(megabytes * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True, capture_output=True)
    except OSError as exc:
        return None, f"cannot make a loop file system: {exc}"
    except subprocess.CalledProcessError as exc:
        return None, f"{' '.join(exc.cmd[:2])} failed: {exc.stderr.decode(errors='replace').strip()[:200]}"
    return mnt, ""


def unmount(mnt: Path) -> None:
    subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def fill(directory: Path, leave: int) -> Path:
    """Write a filler file until only ``leave`` bytes are free."""
    filler = directory / "filler"
    st = os.statvfs(directory)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    chunk = b"\0" * (1024 * 1024)
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:  # ENOSPC ends the filling
        while size > 0:
            size -= fh.write(chunk[: min(size, len(chunk))])
        os.fsync(fh.fileno())
    return filler
