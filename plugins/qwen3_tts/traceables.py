"""build_traceables: the encoder, one function per clip bucket, each compared with upstream's encoder
on the unpadded clip (float64 exactness, then the calibrated fp32 bound)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import TensorSpec, Traceable
from .config import LOG_FLOOR, MELS, SAMPLE_RATE, frames
from .options import SpeakerOptions

#: what the padded frames of a bucket hold: the log floor, what silence gives (any value would do:
#: the port never lets them reach a real frame or the pooling)
PAD_VALUE = float(np.log(LOG_FLOOR))
#: the parity clips of each bucket, as fractions of its length: the whole bucket, and 70 % of it (a
#: 4.2 s clip in the 6 s bucket: the padding must not count)
FILLS = (1.0, 0.7)


def bucket_frames(seconds: int) -> int:
    return frames(seconds * SAMPLE_RATE)


def padded(mels: Any, length: int) -> tuple[Any, Any]:
    """log-mels [frames, 128] -> the bucket's inputs: mels [1, 128, 1, length], valid [1] int32."""
    out = np.full((1, mels.shape[1], 1, length), PAD_VALUE, dtype=mels.dtype)
    out[0, :, 0, : mels.shape[0]] = mels.T
    return out, np.array([mels.shape[0]], np.int32)


def _example(seed: int, length: int, valid: int) -> dict[str, Any]:
    """The log-mels (numpy front end) of ``valid`` frames of the voice-like test signal, padded to the
    bucket's ``length``: what the run loop hands the encoder, so the gates judge the inputs users give."""
    from .config import HOP, MAGNITUDE_EPS, N_FFT
    from .frontend import log_mel, mel_basis
    from .signals import voice_clip

    audio = voice_clip(valid * HOP / SAMPLE_RATE, seed)  # valid x hop samples make valid frames
    mels = log_mel(audio, mel_basis(), N_FFT, HOP, LOG_FLOOR, MAGNITUDE_EPS)
    out, count = padded(mels, length)
    return {"mels": out, "valid": count}


def upstream_embedding(encoder: Any, mels: Any, valid: Any) -> dict[str, Any]:
    """Upstream's encoder on the real frames only: [1, 128, 1, T] padded -> embedding [1, enc_dim]."""
    import torch

    n = int(np.asarray(valid).reshape(-1)[0])
    clip = torch.from_numpy(np.ascontiguousarray(np.asarray(mels)[:, :, 0, :n].transpose(0, 2, 1)))
    with torch.no_grad():  # float32 here, float64 in the float64 check: dtypes follow the input
        return {"embedding": encoder(clip).numpy()}


def build(reference: Any, options: SpeakerOptions, precision: str) -> dict[str, Any]:
    from .encoder import SpeakerEncoder

    encoder = reference.encoder
    functions = {}
    for seconds in options.buckets:
        length = bucket_frames(seconds)
        functions[f"s{seconds}"] = Traceable(
            module=SpeakerEncoder(encoder, length).eval(),
            inputs=[TensorSpec("mels", (1, MELS, 1, length)), TensorSpec("valid", (1,), "int32")],
            outputs=["embedding"],
            examples=[_example(seconds * 10 + i, length, max(8, int(fill * length))) for i, fill in enumerate(FILLS)],
            reference=lambda **kw: upstream_embedding(encoder, **kw),
        )
    return {"encoder": functions}
