"""loop_parity for Kokoro-82M: the run loop against ``KModel.forward`` on one utterance."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import LoopCase, RunOptions, Runtime, Tolerance, spectral_distance
from . import loop
from .options import CHAOS_FACTOR, RUN_SETTINGS, KokoroOptions

#: espeak-ng's en-us phonemes for "Hello world. How are you today?" (fixed: no G2P in the comparison)
PARITY_PHONEMES = "həlˈO wˈɜːld. hˌW ɑːɹ juː tədˈA?"


def cases(
    runtime: Runtime, kref: Any, options: KokoroOptions, factor: float = CHAOS_FACTOR, seed: int = 0
) -> list[Any]:
    """The run loop on ``runtime`` vs KModel.forward on the same phonemes, voice and noise.

    ``durations``: per-token frame counts, exactly. ``utterance``: the audio, phase-blind, within
    ``factor`` × how far KModel's own audio moves when its style vector is perturbed by the fp32 unit
    roundoff (the decoder is chaotic sample by sample, and how much depends on the weights: a fixed
    bound fits one seed's weights only).
    """
    import torch

    from .decoder import deterministic_upstream

    voice_name = sorted(kref.voices)[0]
    options = RunOptions(voice=voice_name, seed=seed, settings={"phonemes": PARITY_PHONEMES}).resolved(
        RUN_SETTINGS, "kokoro"
    )
    ours = loop.run(runtime, "(phonemes given)", options)
    # the loop's noise: numpy's default_rng(seed), standard normal, [1, samples, 9] (one piece here)
    noise = np.random.default_rng(seed).standard_normal((1, len(ours.audio), 9)).astype(np.float32)
    style = kref.voices[voice_name][len(PARITY_PHONEMES) - 1]
    signs = torch.from_numpy(np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=tuple(style.shape)))
    nudged = (style.double() * (1 + 2.0**-24 * signs)).to(style.dtype)
    with torch.no_grad():
        with deterministic_upstream(kref.model, noise):
            out = kref.model(PARITY_PHONEMES, style, 1, return_output=True)
        with deterministic_upstream(kref.model, noise):
            moved = kref.model(PARITY_PHONEMES, nudged, 1, return_output=True)
    expected = out.audio.numpy().reshape(-1)
    movement = (
        spectral_distance(moved.audio.numpy().reshape(-1), expected)
        if moved.audio.numel() == out.audio.numel()
        else float("inf")
    )
    floor = 1e-4  # a bit-stable decoder moves by ~1e-7 relative: do not demand less than this
    bound = factor * max(movement, floor)
    info = {
        "phonemes": PARITY_PHONEMES,
        "voice": voice_name,
        "seed": seed,
        "frames": ours.frames,
        "kmodel_frames": int(out.pred_dur.sum()),
    }
    ours_durations = np.concatenate([np.asarray(p["durations"]) for p in ours.info["pieces"]])
    return [
        LoopCase(
            "durations",
            ours_durations.astype(np.float64),
            out.pred_dur.numpy().astype(np.float64),
            Tolerance(max_abs=0.0),
            info,
        ),
        LoopCase(
            "utterance",
            ours.audio,
            expected,
            Tolerance(spectral_max=bound),
            {**info, "kmodel_movement": f"{movement:.3g}", "factor": factor},
        ),
    ]
