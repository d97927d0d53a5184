"""loop_parity for VibeVoice: the run loop against the reference generate loop (reference.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import LoopCase, RunOptions, Runtime, Tolerance
from . import loop
from .options import RunConfig, VibeVoiceOptions

TOLERANCE = Tolerance(rel=1e-2)


def cases(
    runtime: Runtime,
    model: Any,
    options: VibeVoiceOptions,
    tolerance: Tolerance = TOLERANCE,
    latents: int = 12,
    seed: int = 0,
) -> list[Any]:
    """The loop on ``runtime`` vs the reference generate loop, same preset and noise, a fixed number of latents."""
    import torch

    from .reference import generate
    from .traceables import _bf16

    text = "Hello there, world."
    voice = sorted(model.presets)[0]
    ours = loop.run(runtime, text, RunOptions(voice=voice, seed=seed), max_latents=latents)
    rng = np.random.default_rng(seed)
    noises = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(latents)]
    preset = {part: {k: _bf16(v) for k, v in arrays.items()} for part, arrays in model.presets[voice].items()}
    cfg = RunConfig.load(runtime.constants["config"])
    want = generate(
        model,
        loop.tokenize(text, cfg, runtime.constants.get("tokenizer")),
        preset,
        lambda i: torch.from_numpy(noises[i]),
        max_latents=latents,
    )
    info = {"text": text, "voice": voice, "seed": seed, "latents": ours.frames, "reference_latents": want["latents"]}
    return [LoopCase("utterance", ours.audio, want["audio"], tolerance, info)]
