"""G.711 mu-law (ITU-T G.711, RTP payload type 0) and the WAV → 8 kHz mono conversion it needs."""

from __future__ import annotations

import array
import sys
import wave
from pathlib import Path

SAMPLE_RATE = 8000
_BIAS = 0x84
_CLIP = 32635


def _encode_one(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _CLIP) + _BIAS
    exponent = max(0, ((magnitude >> 7) & 0xFF).bit_length() - 1)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


# One byte per int16 value, indexed by (sample & 0xFFFF): encoding is then a table lookup.
_TABLE = bytes(_encode_one(v - 65536 if v >= 32768 else v) for v in range(65536))


def ulaw_encode(samples: array.array[int]) -> bytes:
    table = _TABLE
    return bytes(table[s & 0xFFFF] for s in samples)


def ulaw_decode_one(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if sign else magnitude


class WavFormatError(Exception):
    pass


def read_mono_8k(path: Path, max_seconds: float) -> array.array[int]:
    """Read a PCM WAV (8/16-bit, any rate, mono or stereo) as 8 kHz mono int16, at most ``max_seconds``."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(min(wav.getnframes(), int(rate * max_seconds)))
    except (wave.Error, EOFError, OSError) as exc:
        raise WavFormatError(f"{path}: {exc}") from exc
    if width == 2:
        pcm = array.array("h")
        pcm.frombytes(frames[: len(frames) - len(frames) % 2])
        if sys.byteorder == "big":
            pcm.byteswap()  # WAV is little-endian
    elif width == 1:
        pcm = array.array("h", ((b - 128) << 8 for b in frames))
    else:
        raise WavFormatError(f"{path}: {8 * width}-bit samples are not supported")
    if channels > 1:
        pcm = array.array("h", (sum(pcm[i : i + channels]) // channels for i in range(0, len(pcm), channels)))
    return _resample(pcm, rate, SAMPLE_RATE)


def _resample(pcm: array.array[int], rate_in: int, rate_out: int) -> array.array[int]:
    """Linear interpolation; adequate for speech and siren tones on PA loudspeakers."""
    if rate_in == rate_out or not pcm:
        return pcm
    n_out = len(pcm) * rate_out // rate_in
    step = rate_in / rate_out
    last = len(pcm) - 1
    out = array.array("h", bytes(2 * n_out))
    for i in range(n_out):
        pos = i * step
        j = int(pos)
        frac = pos - j
        a = pcm[j]
        b = pcm[j + 1] if j < last else a
        out[i] = int(a + (b - a) * frac)
    return out
