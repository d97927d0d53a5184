"""kokoro: Kokoro-82M (hexgrad/Kokoro-82M, kokoro 0.9.4) exported to CoreML.

Components: ``predictor`` (ALBERT, duration and prosody model, text encoder;
one function per token bucket, padding masked so every bucket reproduces KModel
on the unpadded tokens) and ``decoder`` (F0/N prediction, decoder, iSTFTNet
generator over a flexible frame axis; the harmonic source's noise is an input).
Two CoreML calls per utterance; the alignment (durations -> frames) is a gather
on the host.

Laid out on the plugin skeleton (``zoo.core.plugin.skeleton``); its own layers:
``decoder.py`` (the converted decoder and generator), ``config.py`` (upstream's
hyper-parameters and phoneme vocabulary).
"""

from __future__ import annotations

from ...core import ComponentSpec, ModelPlugin, ModelSpec, Tolerance, standard_variants
from .config import HUB_REPO
from .options import BUCKETS, CHAOS_FACTOR, COMPRESSED_LOOP, FULL, RUN_SETTINGS, SMALL, KokoroOptions

__version__ = "0.1.0"

MODEL = "kokoro"
#: a hexgrad/Kokoro-82M commit of the v1.0 release (kokoro-v1_0.pth, voices/*.pt), as pinned by other
#: ports; upstream kokoro itself downloads ``main``. Not checked here (no hub access): see the README.
HUB_REVISION = "f3ff3571791e39611d31c381e3a41a3af07b4987"


#: weights compressed variants keep as they are: the harmonic source and its STFT (kept fp32 in
#: fp16 exports too), whose phase a last-bit change moves (a 1e-7 relative change of the source
#: moves the audio by ~1e-3; see decoder.py)
UNCOMPRESSED = (r"harmonic",)
UNCOMPRESSED_REASON = (
    "the harmonic source's phase: a 1e-7 relative change of the source moves the audio by ~1e-3 (decoder.py)"
)


class Kokoro(ModelPlugin):
    package = __name__
    __version__ = __version__
    options_type = KokoroOptions

    def models(self) -> list[ModelSpec]:
        chaotic = Tolerance(spectral_factor=CHAOS_FACTOR)
        return [
            ModelSpec(
                name=MODEL,
                summary="Kokoro-82M (kokoro 0.9.4): token-bucket predictor + flexible-length decoder, 2 calls per "
                "utterance",
                variants=standard_variants(
                    FULL.as_dict(),
                    SMALL.as_dict(),
                    fp16="default: fp16, the harmonic source and its STFT in fp32",
                    # the harmonic source and its STFT stay fp32: their phase does not fit fp16
                    fp16_options={"fp32_scopes": ("harmonic",)},
                    # the predictor is one multifunction package (a function per bucket): iOS18/macOS15
                    target="iOS18",
                ),
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
                        tolerances={
                            "reference": Tolerance(float64_rel=1e-9, spectral_factor=CHAOS_FACTOR),
                            "fp32": chaotic,
                            "fp16": chaotic,
                        },
                        uncompressed=UNCOMPRESSED,
                        uncompressed_reason=UNCOMPRESSED_REASON,
                    ),
                ),
                hub_repo=HUB_REPO,
                revision=HUB_REVISION,
                sample_rate=24000,
                required_level="mil",
                license="apache-2.0",  # the hub repository's card says so
                run_settings=RUN_SETTINGS,
                compressed_loop=COMPRESSED_LOOP,
                # ISO 639-1 -> the run option that speaks it (zoo eval --lang): upstream's codes
                languages={
                    "en": {"lang": "a"},
                    "es": {"lang": "e"},
                    "fr": {"lang": "f"},
                    "hi": {"lang": "h"},
                    "it": {"lang": "i"},
                    "ja": {"lang": "j"},
                    "pt": {"lang": "p"},
                    "zh": {"lang": "z"},
                },
            )
        ]


plugin = Kokoro()
