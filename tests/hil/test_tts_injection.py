"""Alert text that reaches the real espeak-ng can never become an option (the in-process checks of the
command line are in tests/unit/test_tts_injection.py)."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import pytest

from drivers.broadcast import tts
from drivers.broadcast.config import TtsConfig

pytestmark = [pytest.mark.hil,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by .ci/run")]


def frames(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes()


def test_an_option_inside_the_text_is_spoken_as_text(tmp_path: Path) -> None:
    # Behind "--" even a leading option would be spoken; inside the text it is just words.
    secret = tmp_path / "secret.txt"
    secret.write_text("the private key is here " * 40)
    spoken = asyncio.run(tts.render(f"水位 -f{secret}", TtsConfig(), tmp_path / "work"))
    as_file = asyncio.run(tts.render("x", TtsConfig(command=["espeak-ng", "-w", "{out}", "-f", str(secret)]),
                                     tmp_path / "work2"))
    assert frames(spoken) < frames(as_file) / 2  # the file was not read
