"""Mandarin text-to-speech with espeak-ng, rendered to a WAV file and checked before use.

Policy (docs/broadcast.md): recorded voice for every fixed message; TTS only for the dynamic
parts (levels, times). A render that fails or comes out empty is reported, never played.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from drivers.broadcast.base import wav_path_ok
from drivers.broadcast.config import TtsConfig


class TtsError(Exception):
    pass


def _clean(text: str, max_chars: int) -> str:
    # Control characters could confuse the synthesizer's SSML-less parser; drop them.
    cleaned = "".join(ch for ch in text if ch.isprintable()).strip()
    if not cleaned:
        raise TtsError("TTS text is empty")
    if cleaned.startswith("-"):
        # Behind "--" it would be spoken, not obeyed; refused all the same, for a command configured
        # some other way (text arriving on a command line is never allowed to look like an option).
        raise TtsError("TTS text must not start with '-'")
    if len(cleaned) > max_chars:
        raise TtsError(f"TTS text longer than {max_chars} characters")
    return cleaned


async def render(text: str, config: TtsConfig, work_dir: Path) -> Path:
    """Render ``text`` to a WAV under ``work_dir`` (cached by content) and prove it is non-empty."""
    cleaned = _clean(text, config.max_chars)
    key = hashlib.sha256(("\0".join(config.command) + "\0" + cleaned).encode()).hexdigest()[:24]
    out = work_dir / f"tts-{key}.wav"
    if await asyncio.to_thread(_cached, out):
        return out
    # A fresh file of our own (O_EXCL, 0600) for the synthesizer to write into: never a name someone
    # could have planted as a link to a file the daemon may write.
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix=f".tts-{key}-", suffix=".wav", dir=work_dir)
    os.close(fd)
    partial = Path(name)
    argv = [arg.replace("{out}", str(partial)).replace("{text}", cleaned) for arg in config.command]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise TtsError(f"cannot run {argv[0]}: {exc}") from exc
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), config.timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise TtsError(f"{argv[0]} took longer than {config.timeout} s") from exc
    if proc.returncode != 0:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise TtsError(f"{argv[0]} exited {proc.returncode}: {stderr.decode(errors='replace')[:200]}")
    await asyncio.to_thread(_commit, partial, out)
    return out


def _cached(out: Path) -> bool:
    out.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    return out.exists() and not out.is_symlink() and wav_path_ok(out) is None


def _commit(partial: Path, out: Path) -> None:
    problem = wav_path_ok(partial)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise TtsError(f"TTS output unusable: {problem}")
    os.chmod(partial, 0o640)
    partial.replace(out)
    _prune(out.parent, keep=64)


def _prune(work_dir: Path, keep: int) -> None:
    """The cache must not grow without bound: keep the newest ``keep`` renders."""
    renders = sorted(work_dir.glob("tts-*.wav"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in renders[keep:]:
        old.unlink(missing_ok=True)
