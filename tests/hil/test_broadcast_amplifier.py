"""A PA whose amplifier never confirmed OFF is not reported as switched off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.broadcast.audio import AlsaAudio
from drivers.broadcast.config import AlsaAudioConfig
from sim.support import free_port

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def test_unreachable_amplifier_off_is_a_fault(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the amplifier's relay board is unreachable
    config = AlsaAudioConfig.model_validate({
        "type": "alsa_audio", "device": str(tmp_path / "sink.wav"), "work_dir": str(tmp_path / "tts"),
        "amplifier": {"board": {"transport": "tcp", "host": "127.0.0.1", "port": port, "timeout": 0.5},
                      "coil": 1, "warmup": 0},
    })
    output = AlsaAudio("pa", config)
    result = asyncio.run(output.deactivate())
    assert not result.ok and result.fault == "amplifier_unreachable", result
    assert any("amplifier OFF failed" in fault for fault in output.status()["faults"])
