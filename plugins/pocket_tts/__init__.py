"""pocket_tts: Kyutai PocketTTS (pocket-tts 4.0.1) exported to CoreML, one checkpoint (a bundled
config: ``english`` by default, ``--checkpoint french_24l`` ...) per export.

Components: ``flowlm`` (multifunction: ``prefill`` computes the KV rows of a
64-token chunk of conditioning, ``step`` runs one generation step with the LSD
flow decode fused), ``mimi`` (streaming decoder, two 80 ms frames per call) —
1.5 CoreML calls per frame — and ``voice_encoder`` (voice cloning from a WAV,
run once per voice; the result is cached).

Laid out on the plugin skeleton (``zoo.core.plugin.skeleton``); its own modules:
``text.py`` (upstream's text rules and chunking), ``tokenizer.py`` (reading either tokenizer
format a checkpoint ships, and the offline stand-in used with random weights),
``checkpoints.py`` (the bundled configs and their families).
"""

from __future__ import annotations

from dataclasses import replace

from ...core import ComponentSpec, ModelPlugin, ModelSpec, Variant, standard_variants
from .checkpoints import DEFAULT as DEFAULT_CHECKPOINT
from .checkpoints import discover as discover_checkpoints
from .options import COMPRESSED_CONSTANTS, COMPRESSED_LOOP, FULL, RUN_SETTINGS, SMALL, PocketOptions

__version__ = "0.1.0"

MODEL = "pocket_tts"
#: pinned in pocket-tts 4.0.1's config/english.yaml (weights_path)
HUB_REPO = "kyutai/pocket-tts"
HUB_REVISION = "db04f0e653473e5c7333c69686ac92b7460b0c1d"


def _stateful(name: str, options: PocketOptions, description: str) -> Variant:
    """An fp16 variant whose Mimi streaming state lives in CoreML states (iOS18)."""
    return Variant(name, "fp16", "iOS18", replace(options, stateful_mimi=True).as_dict(), description)


#: weights compressed variants keep as they are: the RoPE cos/sin tables are read by position, not
#: multiplied into activations, so a table error is not averaged away (see UNCOMPRESSED_REASON)
UNCOMPRESSED = (r"rope_(cos|sin)",)
UNCOMPRESSED_REASON = "RoPE tables: looked up by position, so their quantization error rotates every query and key"


class PocketTTS(ModelPlugin):
    package = __name__
    __version__ = __version__
    options_type = PocketOptions

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                name=MODEL,
                summary="Kyutai PocketTTS (pocket-tts 4.0.1; --checkpoint: language, date, depth): flow LM + "
                "streaming Mimi, 1.5 calls per 80 ms frame",
                variants=standard_variants(
                    FULL.as_dict(),
                    SMALL.as_dict(),
                    fp16="default: fp16 weights and compute, explicit state I/O",
                    fp32="fp32 everywhere, explicit state I/O",
                    # flowlm is one multifunction package (prefill and step): iOS18/macOS15
                    target="iOS18",
                    extra={
                        "fp16-stateful": _stateful(
                            "fp16-stateful", FULL, "fp16, Mimi streaming state as CoreML states (iOS18/macOS15)"
                        ),
                        "small-fp16-stateful": _stateful(
                            "small-fp16-stateful", SMALL, "reduced-size stateful variant for tests"
                        ),
                    },
                ),
                default_variant="fp16",
                checkpoints=(checkpoints := discover_checkpoints()),
                default_checkpoint=DEFAULT_CHECKPOINT if checkpoints else "",
                components=(
                    ComponentSpec(
                        "flowlm",
                        "prefill: 64 conditioning tokens -> their KV rows; step: latent + noise -> next latent, EOS "
                        "logit, KV row",
                        functions=("prefill", "step"),
                        uncompressed=UNCOMPRESSED,
                        uncompressed_reason=UNCOMPRESSED_REASON,
                    ),
                    ComponentSpec(
                        "mimi",
                        "streaming Mimi decoder: 2 quantized latents [1, C, 2] (C 512; 128 in the small family) + "
                        "state -> 3840 samples + state",
                    ),
                    ComponentSpec(
                        "voice_encoder",
                        "voice cloning: audio prompt [1, 1, 24000 * voice_seconds] -> conditioning rows",
                    ),
                ),
                # the core's defaults: float64 exactness, fp32 within 16x upstream's own rounding, fp16 cosine
                hub_repo=HUB_REPO,
                revision=HUB_REVISION,
                sample_rate=24000,
                required_level="mil",
                run_settings=RUN_SETTINGS,
                compressed_loop=COMPRESSED_LOOP,
                # a compressed variant stores the text table and the voices' caches as look-up tables
                # (fp16-mixed, full size: 8.2 + 3.1 MB of the 85.5 MB before), judged by the loop
                compressed_constants=COMPRESSED_CONSTANTS,
                clones_voices=True,
            )
        ]


plugin = PocketTTS()
