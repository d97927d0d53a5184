"""pocket_tts: Kyutai PocketTTS (pocket-tts 4.0.1, ``english``) exported to CoreML.

Components: ``flowlm`` (multifunction: ``prefill`` computes the KV rows of a
64-token chunk of conditioning, ``step`` runs one generation step with the LSD
flow decode fused), ``mimi`` (streaming decoder, two 80 ms frames per call) —
1.5 CoreML calls per frame — and ``voice_encoder`` (voice cloning from a WAV,
run once per voice; the result is cached). The hooks below are thin: each names the module that
does the work.
"""

from __future__ import annotations

from pathlib import Path

from zoo.core import ComponentSpec, ModelSpec, Tolerance, Variant, hookimpl

__version__ = "0.1.0"

MODEL = "pocket_tts"
#: pinned in pocket-tts 4.0.1's config/english.yaml (weights_path)
HUB_REPO = "kyutai/pocket-tts"
HUB_REVISION = "db04f0e653473e5c7333c69686ac92b7460b0c1d"

#: cache_size: KV slots (voice + text + generated frames); chunk: prefill tokens per call;
#: decode_steps: LSD steps fused in flowlm.step; mimi_frames: latent frames per Mimi call;
#: mimi_max_positions: RoPE table of the decoder transformer (200 Hz steps per text chunk);
#: voice_seconds: longest voice prompt the voice encoder takes.
_COMMON = {"cache_size": 512, "chunk": 64, "decode_steps": 1, "mimi_frames": 2}
_FULL = {"size": "full", **_COMMON, "mimi_max_positions": 8192, "voice_seconds": 10.0}
_SMALL = {"size": "small", **_COMMON, "mimi_max_positions": 4096, "voice_seconds": 2.0}


def _options(variant: Variant) -> dict:
    return dict(variant.options)


@hookimpl
def zoo_register_models():
    return [
        ModelSpec(
            name=MODEL,
            summary="Kyutai PocketTTS english (pocket-tts 4.0.1): flow LM + streaming Mimi, 1.5 calls per 80 ms frame",
            variants={
                "fp16": Variant("fp16", "fp16", "iOS17", _FULL, "default: fp16 weights and compute, explicit state I/O"),
                "fp32": Variant("fp32", "fp32", "iOS17", _FULL, "fp32 everywhere, explicit state I/O"),
                "fp16-stateful": Variant("fp16-stateful", "fp16", "iOS18", {**_FULL, "stateful_mimi": True}, "fp16, Mimi streaming state as CoreML states (iOS18/macOS15)"),
                "small-fp16-stateful": Variant("small-fp16-stateful", "fp16", "iOS18", {**_SMALL, "stateful_mimi": True}, "reduced-size stateful variant for tests"),
                "small-fp32": Variant("small-fp32", "fp32", "iOS17", _SMALL, "reduced-size architecture for tests (--random-weights only)"),
                "small-fp16": Variant("small-fp16", "fp16", "iOS17", _SMALL, "reduced-size architecture for tests (--random-weights only)"),
            },
            default_variant="fp16",
            components=(
                ComponentSpec("flowlm", "prefill: 64 conditioning tokens -> their KV rows; step: latent + noise -> next latent, EOS logit, KV row", functions=("prefill", "step")),
                ComponentSpec("mimi", "streaming Mimi decoder: 2 quantized latents [1, 512, 2] + state -> 3840 samples + state"),
                ComponentSpec("voice_encoder", "voice cloning: audio prompt [1, 1, 24000 * voice_seconds] -> conditioning rows"),
            ),
            # the core's defaults: float64 exactness, fp32 within 16x upstream's own rounding, fp16 cosine
            hub_repo=HUB_REPO,
            revision=HUB_REVISION,
            sample_rate=24000,
            required_level="mil",
        )
    ]


@hookimpl
def load_reference(model, variant, weights):
    from . import reference

    return reference.load(weights, size=variant.options["size"], voice_seconds=10.0 if variant.options["size"] == "full" else 2.0)


@hookimpl
def build_traceables(model, variant, reference):
    from . import traceables

    return traceables.build(reference.model, _options(variant), variant.precision)


@hookimpl
def export_constants(model, variant, reference, out_dir):
    from . import constants

    return constants.export(reference.model, _options(variant), variant.precision, Path(out_dir))


@hookimpl
def run_loop(model, runtime, text, options):
    from . import loop

    return loop.run(runtime, text, options)


@hookimpl
def loop_parity(model, variant, reference, runtime):
    from . import parity

    # upstream runs in fp32 torch whatever the variant: the traceables are fp32 too
    return parity.cases(runtime, reference.model, Tolerance(rel=1e-3))
