"""Alert text that reaches a command line can never become an option.

Before: the TTS command was ``espeak-ng ... -w {out} {text}``; an alert whose text was
``-f/etc/fieldgate/keys/...`` made espeak-ng read that file aloud over the PA. What the real espeak-ng does
with such text is in tests/hil/test_tts_injection.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.broadcast import tts
from drivers.broadcast.config import AlsaAudioConfig, TtsConfig


def test_the_default_command_ends_options_before_the_text() -> None:
    command = TtsConfig().command
    assert command.index("--") < command.index("{text}")


def test_a_command_without_the_separator_is_refused() -> None:
    with pytest.raises(ValidationError, match='put "--" before'):
        TtsConfig(command=["espeak-ng", "-w", "{out}", "{text}"])


def test_text_that_looks_like_an_option_is_refused_not_obeyed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the private key is here " * 20)
    with pytest.raises(tts.TtsError, match="must not start with '-'"):
        asyncio.run(tts.render(f"-f{secret}", TtsConfig(), tmp_path / "work"))
    with pytest.raises(tts.TtsError, match="must not start with '-'"):
        asyncio.run(tts.render(f"  -f{secret}", TtsConfig(), tmp_path / "work"))


def test_player_gets_absolute_clip_paths(tmp_path: Path) -> None:
    from drivers.broadcast.audio import AlsaAudio

    out = AlsaAudio("pa", AlsaAudioConfig(type="alsa_audio"))
    argv = out._argv((Path("-D.wav"), Path("clips/a.wav")))
    assert all(not arg.startswith("-") or arg in ("-q", "-D") for arg in argv)
    assert argv[-2].startswith("/") and argv[-1].startswith("/")
