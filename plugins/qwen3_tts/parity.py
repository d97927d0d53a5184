"""loop_parity: the whole loop (WAV -> numpy front end -> encoder buckets) against upstream's
``mel_spectrogram`` + ``Qwen3TTSSpeakerEncoder`` on the same audio, one clip per bucket."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...core import LoopCase, RunOptions, Tolerance
from ...core.kit.audio import read_wav, write_wav
from . import loop
from .config import SAMPLE_RATE
from .options import SpeakerOptions
from .signals import voice_clip

#: the loop in fp32 (numpy front end in float64 rounded to float32, the port's masked buckets) against
#: upstream in fp32 on the unpadded clip: cosine of the embeddings. Measured (small, seeds 0-2, clips
#: 0.7 x each bucket): 1 - cosine <= 3e-12; a front end with htk mels or constant padding, or pooling
#: over the padding: 1 - cosine >= 1e-3 (tests/plugins/qwen3_tts)
TOLERANCE = Tolerance(cosine_min=1 - 1e-7)


def upstream_embedding(reference: Any, audio: Any) -> Any:
    """What upstream's ``extract_speaker_embedding`` returns for 24 kHz ``audio`` (fp32)."""
    import torch

    from . import upstream

    with torch.no_grad():
        mels = upstream.mel_spectrogram(torch.from_numpy(np.asarray(audio, np.float32)))
        return reference.encoder(mels)[0].numpy()


def cases(runtime: Any, reference: Any, options: SpeakerOptions) -> list[LoopCase]:
    out = []
    with tempfile.TemporaryDirectory(prefix="zoo-qwen3-speaker-") as tmp:
        for seconds in sorted(options.buckets):
            clip = Path(tmp) / f"clip{seconds}.wav"
            write_wav(clip, voice_clip(0.7 * seconds, seed=seconds), SAMPLE_RATE)
            audio, _ = read_wav(clip)
            ours = loop.run(runtime, "", RunOptions(voice=str(clip)))
            info = {"seconds": round(0.7 * seconds, 2), "bucket": seconds}
            out.append(LoopCase(f"clip{seconds}s", ours.values, upstream_embedding(reference, audio), TOLERANCE, info))
    return out
