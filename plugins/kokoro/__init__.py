"""kokoro: Kokoro-82M (hexgrad/Kokoro-82M, kokoro 0.9.4) exported to CoreML.

Components: ``predictor`` (ALBERT, duration and prosody model, text encoder;
one function per token bucket, padding masked so every bucket reproduces KModel
on the unpadded tokens) and ``decoder`` (F0/N prediction, decoder, iSTFTNet
generator over a flexible frame axis; the harmonic source's noise is an input).
Two CoreML calls per utterance; the alignment (durations -> frames) is a gather
on the host. The hooks are thin: each names the module that does the work.
"""

from __future__ import annotations

from pathlib import Path

from zoo.core import ComponentSpec, ModelSpec, Tolerance, Variant, hookimpl

from .config import HUB_REPO

__version__ = "0.1.0"

MODEL = "kokoro"
#: a hexgrad/Kokoro-82M commit of the v1.0 release (kokoro-v1_0.pth, voices/*.pt), as pinned by other
#: ports; upstream kokoro itself downloads ``main``. Not checked here (no hub access): see the README.
HUB_REVISION = "f3ff3571791e39611d31c381e3a41a3af07b4987"

#: fp32_scopes: Decoder submodules kept in fp32 by an fp16 export (recorded with the variant);
#: buckets: predictor token buckets (boundary tokens included; 512 = upstream's 510 phonemes);
#: max_frames: the decoder's frame-axis bound (40 frames per second); decoder_tokens: token
#: counts of the decoder's parity examples (their frames follow from the predicted durations)
BUCKETS = (32, 64, 128, 256, 512)
_FULL = {"size": "full", "buckets": BUCKETS, "max_frames": 4096, "decoder_tokens": (12, 20)}
_SMALL = {"size": "small", "buckets": BUCKETS, "max_frames": 1024, "decoder_tokens": (12, 20)}
_FP32_SOURCE = {"fp32_scopes": ("harmonic",)}


#: the decoder is chaotic sample by sample (the phase of near-silent STFT bins flips between +pi and
#: -pi on last-bit differences, at any precision), so it is judged phase-blind at every level, within
#: CHAOS_FACTOR x how far the torch decoder itself moves when its inputs are perturbed by the compared
#: precision's unit roundoff (measured at export time on the parity inputs; see README "Validation").
#: Measured (small, seed 0): packages fp32 0.038 for a movement of 0.037 (1.0x), fp16 0.27 for 0.23
#: (1.2x); the remainder trap at fp32 0.43 (> 3 x 0.037).
CHAOS_FACTOR = 3.0


@hookimpl
def zoo_register_models():
    chaotic = Tolerance(spectral_factor=CHAOS_FACTOR)
    return [
        ModelSpec(
            name=MODEL,
            summary="Kokoro-82M (kokoro 0.9.4): token-bucket predictor + flexible-length decoder, 2 calls per utterance",
            variants={
                "fp16": Variant("fp16", "fp16", "iOS17", {**_FULL, **_FP32_SOURCE}, "default: fp16, the harmonic source and its STFT in fp32"),
                "fp32": Variant("fp32", "fp32", "iOS17", _FULL, "fp32 everywhere"),
                "small-fp32": Variant("small-fp32", "fp32", "iOS17", _SMALL, "reduced-size architecture for tests (--random-weights only)"),
                "small-fp16": Variant("small-fp16", "fp16", "iOS17", {**_SMALL, **_FP32_SOURCE}, "reduced-size architecture for tests (--random-weights only)"),
            },
            default_variant="fp16",
            components=(
                ComponentSpec(
                    "predictor",
                    "token ids [1, bucket] + length + style -> durations, duration features, text features",
                    functions=tuple(f"tokens{b}" for b in BUCKETS),
                    # the core's defaults: float64 exactness, fp32 within 16x upstream's own rounding, fp16 cosine
                    integer_outputs={"duration": "round_min1"},  # the loop's rounding (loop.durations)
                ),
                ComponentSpec(
                    "decoder",
                    "aligned features [1, C, frames] + style + source noise -> audio [1, 600 * frames]",
                    # float64: measured spectral 1e-11, rel 9e-11 sample-wise (no chaos at float64's roundoff)
                    tolerances={"reference": Tolerance(float64_rel=1e-9, spectral_factor=CHAOS_FACTOR), "fp32": chaotic, "fp16": chaotic},
                ),
            ),
            hub_repo=HUB_REPO,
            revision=HUB_REVISION,
            sample_rate=24000,
            required_level="mil",
        )
    ]


@hookimpl
def load_reference(model, variant, weights):
    from . import reference

    return reference.load(weights, size=variant.options["size"])


@hookimpl
def build_traceables(model, variant, reference):
    from . import traceables

    return traceables.build(reference.model, dict(variant.options), variant.precision)


@hookimpl
def export_constants(model, variant, reference, out_dir):
    from . import constants

    return constants.export(reference.model, dict(variant.options), Path(out_dir))


@hookimpl
def run_loop(model, runtime, text, options):
    from . import loop

    return loop.run(runtime, text, options)


@hookimpl
def loop_parity(model, variant, reference, runtime):
    from . import loop

    return loop.parity_cases(runtime, reference.model, CHAOS_FACTOR)
