"""export_constants for Kokoro-82M: what the run loop needs besides the packages.

* ``voices.safetensors`` — each voice pack as [510, 2 * style_dim] float32 (row
  ``len(phonemes) - 1`` is the style of an utterance, as upstream);
* ``config.json`` — the phoneme vocabulary of the weights' config, the token
  buckets, frame geometry and limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .options import KokoroOptions, RunConfig


def export(kref: Any, options: KokoroOptions, precision: str, out_dir: Path) -> dict[str, Path]:
    import numpy as np
    from safetensors.numpy import save_file

    if not kref.voices:
        raise ValueError("no voice packs: the weights directory has no voices/*.pt")
    voices = {
        name: np.asarray(pack, dtype=np.float32).reshape(pack.shape[0], -1)
        for name, pack in sorted(kref.voices.items())
    }
    path = out_dir / "voices.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in voices.items()}, str(path))
    files = {"voices": path}

    gen = kref.model.decoder.generator
    config = RunConfig(
        sample_rate=24000,
        samples_per_frame=int(np.prod(kref.config["istftnet"]["upsample_rates"])) * gen.stft.hop_length * 2,
        buckets=tuple(int(b) for b in options.buckets),
        max_frames=options.max_frames,
        max_phonemes=510,
        noise_channels=gen.m_source.l_sin_gen.dim,
        style_dim=int(kref.config["style_dim"]),
        vocab=dict(kref.config["vocab"]),
        voices=tuple(sorted(voices)),
        default_voice="af_heart" if "af_heart" in voices else sorted(voices)[0],
    )
    files["config"] = config.save(out_dir / "config.json")
    return files
