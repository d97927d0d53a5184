"""A voice-like test signal: what the parity examples, the loop's parity clips, the tests and the
benchmark feed the encoder (random weights describe no speaker, but the front end and the encoder
see the harmonics, syllable rhythm and level of speech, not white noise)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import SAMPLE_RATE


def voice_clip(seconds: float, seed: int = 0) -> Any:
    """A voiced-like test signal: a 120-180 Hz harmonic series with vibrato, amplitude-modulated
    syllables and a little noise, at 24 kHz in [-0.5, 0.5] (16-bit exact after a WAV round trip)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 60 * rng.random() + 8 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase + rng.random()) / k for k in range(1, 12))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * (3 + rng.random()) * t) ** 2
    audio = 0.15 * voiced * syllables + 0.01 * rng.standard_normal(t.size)
    return (np.round(np.clip(audio, -0.5, 0.5) * 32767) / 32768).astype(np.float32)
