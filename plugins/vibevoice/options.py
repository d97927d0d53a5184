"""vibevoice's typed records: the variant options, and the run config written by constants.py and
read back by loop.py."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import CompressedLoop, Record, RunSetting


@dataclass(frozen=True)
class VibeVoiceOptions(Record):
    #: "full" (VibeVoice-Realtime-0.5B) or "small" (a reduced architecture for tests, random weights only)
    size: str
    #: text tokens per lm call
    lm_chunk: int = 32
    #: KV cache slots of the lm (voice preset + text)
    lm_capacity: int = 512
    #: KV cache slots of the tts_lm (voice preset + text windows + speech latents; 7.5 latents per second)
    tts_capacity: int = 1024


#: ``zoo run vibevoice --set NAME=VALUE``
RUN_SETTINGS = (
    RunSetting("cfg_scale", float, "classifier-free guidance scale (default: the export's, 1.5)", min=0.0, max=20.0),
    RunSetting(
        "max_seconds",
        float,
        "longest audio of one piece of text before EOS (a long text is spoken in pieces that fit the export's caches)",
        default=30.0,
        above=0.0,
        max=600.0,
    ),
)

FULL = VibeVoiceOptions("full")
SMALL = VibeVoiceOptions("small", lm_chunk=8, lm_capacity=128, tts_capacity=256)


@dataclass(frozen=True)
class TokenizerInfo(Record):
    #: "tokenizer.json": the Qwen2.5 tokenizer file; "bytes": the offline stand-in of --random-weights
    kind: str
    vocab: int


@dataclass(frozen=True)
class RunConfig(Record):
    """``config.json`` of an export: windows, chunk sizes, cache capacities, latent geometry."""

    sample_rate: int
    samples_per_latent: int
    latent: int
    hidden: int
    text_window: int
    speech_window: int
    lm_chunk: int
    lm_capacity: int
    tts_capacity: int
    cfg_scale: float
    eos_probability: float
    voices: list[str]
    default_voice: str
    tokenizer: dict
    decoder_cache_shapes: list[list[int]]

    @property
    def tokenizer_info(self) -> TokenizerInfo:
        return TokenizerInfo.from_mapping(self.tokenizer, "config.json: tokenizer")


#: compressed variants speak this against the uncompressed packages (core: ``loop:compressed``)
COMPRESSED_LOOP = CompressedLoop(
    text="The quick brown fox jumps over the lazy dog.",
    # the speech latents end within one of the uncompressed loop's
    frames_max_delta=1,
    # no farther than another seed's audio. Measured (small, random weights, seed distance 0.625):
    # w8 0.09x, p4 0.68x; latents +0
    spectral_factor=1.0,
    basis="latents within 1; audio no farther than another seed's (small, random weights: w8 0.09x, p4 0.68x)",
    settings={"max_seconds": "2"},
)

#: compressed variants store the lm's token table as look-up tables (core: ``compress:constants``):
#: 136 M values, a third of the lm's weights; ``COMPRESSED_LOOP`` judges the loop with it
COMPRESSED_CONSTANTS = {"embeddings": ("embed_tokens",)}
