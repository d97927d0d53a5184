"""vibevoice: Microsoft VibeVoice-Realtime-0.5B exported to CoreML, language models laid out for the Neural Engine.

Components: ``lm`` (text encoder, Qwen2 lower 4 layers, whole chunks of text per call),
``tts_lm`` (Qwen2 upper 20 layers, positive and negative CFG paths as a batch of 2, KV
caches as CoreML states, EOS logit), ``sampler`` (diffusion head + 5 DPM-Solver++ steps +
CFG + acoustic connector in one call) and ``decoder`` (streaming σ-VAE decoder, 3200
samples per latent). Per speech latent: 3 calls (sampler, decoder, tts_lm).

Laid out on the plugin skeleton (``zoo.core.plugin.skeleton``); its own layers:
``lm.py`` (Qwen2 in the Neural Engine layout), ``diffusion.py`` (the fused sampler),
``acoustic.py`` (the streaming decoder), ``presets.py`` (voice preset files),
``config.py`` (upstream's hyper-parameters).
"""

from __future__ import annotations

from ...core import ComponentSpec, ModelPlugin, ModelSpec, Tolerance, standard_variants
from .config import HUB_REPO
from .options import COMPRESSED_CONSTANTS, COMPRESSED_LOOP, FULL, RUN_SETTINGS, SMALL, VibeVoiceOptions

__version__ = "0.1.0"

MODEL = "vibevoice"
#: a microsoft/VibeVoice-Realtime-0.5B commit as pinned by another port; not checked here (no hub access),
#: and the checkpoint loader was only run on a checkpoint written under the released names (see the README)
HUB_REVISION = "6bce5f06044837fe6d2c5d7a71a84f0416bd57e4"

#: the language models keep their KV caches in fp16 in every variant (CoreML states are fp16 only), so
#: their fp32 error is fp16 storage rounding, not fp32's: bounded at 16x the difference the fp16 caches
#: make to the torch port's own outputs (against float32 caches), measured at export time.
#: Measured (small, vs transformers with an fp32 cache): rel 1.5e-4 at weight scale 1, up to 1.5e-2 at
#: scale 4 (q.k logits x16: a sharper softmax amplifies the rounding of K), where a fixed bound
#: (1e-3, then 16x the fp16 roundoff) failed. In float64 the caches are float64 too and the port is
#: exact (measured 9e-16).
_FP16_CACHE = Tolerance(rounding_factor=16, storage="fp16")
_LM = {
    "reference": Tolerance(float64_rel=1e-9, rounding_factor=16, storage="fp16"),
    "fp32": _FP16_CACHE,
    "fp16": Tolerance(cosine_min=0.999),
}


class VibeVoice(ModelPlugin):
    package = __name__
    __version__ = __version__
    options_type = VibeVoiceOptions

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                name=MODEL,
                summary="VibeVoice-Realtime-0.5B: Qwen2 lms in the Neural Engine layout with state KV caches, fused "
                "diffusion sampler, streaming decoder",
                variants=standard_variants(
                    FULL.as_dict(),
                    SMALL.as_dict(),
                    target="iOS18",
                    fp16="default: fp16, KV caches as CoreML states (iOS18/macOS15)",
                    fp32="fp32 compute and weights (the KV state is fp16: CoreML states are)",
                ),
                default_variant="fp16",
                components=(
                    ComponentSpec(
                        "lm",
                        "text embeddings [1, 896, 1, 32] (token table rows, a constant) + position + valid -> "
                        "hidden [1, 896, 1, 32]; KV cache in states",
                        tolerances=_LM,
                    ),
                    ComponentSpec(
                        "tts_lm",
                        "embeddings [2, 896, 1, 5] (positive, negative) + positions + valid -> hidden, EOS logits; KV "
                        "caches in states",
                        tolerances=_LM,
                    ),
                    ComponentSpec(
                        "sampler",
                        "conditions [2, 896] + noise [1, 64] + CFG scale -> speech latent [1, 64] and its embedding "
                        "[1, 896]",
                    ),
                    ComponentSpec("decoder", "speech latent [1, 64] + conv caches -> 3200 samples + caches"),
                ),
                hub_repo=HUB_REPO,
                revision=HUB_REVISION,
                sample_rate=24000,
                required_level="mil",
                run_settings=RUN_SETTINGS,
                compressed_loop=COMPRESSED_LOOP,
                compressed_constants=COMPRESSED_CONSTANTS,
            )
        ]


plugin = VibeVoice()
