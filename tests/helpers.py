"""Small helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def read_wav(path: Path, rate: int = 24000) -> np.ndarray:
    """A 16-bit mono WAV written by `zoo run`, as floats in [-1, 1]."""
    with wave.open(str(path)) as w:
        assert w.getframerate() == rate and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32767


def upstream_decoder_name(key: str) -> str:
    """transformers' acoustic-decoder parameter name -> the VibeVoice checkpoint's (below ``...acoustic_tokenizer.decoder.``),
    from the layout facts: upstream's stage 0 is transformers' stem, and its convolutions nest one level deeper."""
    if key.startswith("stem.conv.conv."):
        key = key.replace("stem.conv.conv.", "upsample_layers.0.0.conv.conv.conv.")
    elif key.startswith("stem.stage."):
        key = key.replace("stem.stage.", "stages.0.")
    elif key.startswith("conv_layers."):
        index, rest = key[len("conv_layers."):].split(".", 1)
        key = f"upsample_layers.{int(index) + 1}.0.{rest}" if rest.startswith("convtr.") else f"stages.{int(index) + 1}.{rest[len('stage.'):]}"
    elif key.startswith("head."):
        key = "head.conv." + key[len("head."):]
    return key.replace("mixer.conv.", "mixer.conv.conv.conv.")
