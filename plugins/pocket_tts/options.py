"""pocket_tts's typed records: the variant options, and the run config written by constants.py and
read back by loop.py. Also the constants every module shares."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import CompressedLoop, Record, RunSetting


@dataclass(frozen=True)
class PocketOptions(Record):
    #: "full" (the checkpoint's architecture) or "small" (reduced for tests, random weights only)
    size: str
    #: the pocket-tts config the weights, tokenizer and text rules come from (``--checkpoint``)
    checkpoint: str = "english"
    #: KV slots of the flow LM (voice + text + generated frames)
    cache_size: int = 512
    #: conditioning tokens per prefill call
    chunk: int = 64
    #: LSD decode steps fused in flowlm.step
    decode_steps: int = 1
    #: latent frames per Mimi call
    mimi_frames: int = 2
    #: RoPE table of the Mimi decoder transformer (200 Hz steps per text chunk)
    mimi_max_positions: int = 8192
    #: longest voice prompt the voice encoder takes
    voice_seconds: float = 10.0
    #: Mimi's streaming state as CoreML states (iOS18/macOS15) instead of explicit inputs/outputs
    stateful_mimi: bool = False


#: ``zoo run pocket_tts --set NAME=VALUE`` (no default: the export's own value, from upstream's config)
RUN_SETTINGS = (
    RunSetting(
        "temperature", float, "sampling temperature of the flow LM's noise (0: deterministic)", min=0.0, max=10.0
    ),
    RunSetting("eos_threshold", float, "EOS logit above which a text chunk ends"),
    RunSetting("frames_after_eos", int, "frames generated after EOS fires", min=0, max=1000),
    RunSetting(
        "max_tokens", int, "text tokens per chunk (upstream splits text at sentence ends within it)", min=1, max=1000
    ),
)

FULL = PocketOptions("full")
SMALL = PocketOptions("small", mimi_max_positions=4096, voice_seconds=2.0)


@dataclass(frozen=True)
class TextRulesRecord(Record):
    """upstream's text normalisation switches (pocket-tts config)."""

    pad_with_spaces_for_short_inputs: bool
    remove_semicolons: bool
    append_terminal_punctuation: bool
    capitalize_first_letter: bool
    replace_characters: list[list[str]]


@dataclass(frozen=True)
class RunConfig(Record):
    """``config.json`` of an export: generation parameters and package geometry."""

    sample_rate: int
    frame_rate: float
    samples_per_frame: int
    mimi_steps_per_frame: int
    mimi_frames_per_call: int
    mimi_stateful: bool
    cache_size: int
    kv_layers: int
    kv_width: int
    chunk: int
    decode_steps: int
    mimi_max_positions: int
    temperature: float
    eos_threshold: float
    frames_after_eos: int | None
    min_frames_before_eos: int
    tokens_per_second: float
    gen_seconds_padding: float
    max_tokens_per_chunk: int
    fade_in_samples: int
    voice_prompt_samples: int
    default_voice: str | None
    voices: list[str]
    tokenizer_is_real: bool
    text_rules: dict


#: compressed variants speak this against the uncompressed packages (core: ``loop:compressed``)
COMPRESSED_LOOP = CompressedLoop(
    text="The quick brown fox jumps over the lazy dog.",
    # EOS within one frame of the uncompressed loop's
    frames_max_delta=1,
    # no farther than another seed's audio. Measured (small, random weights, seed distance 0.014):
    # w8 0.00x, mixed 0.07x, p4 0.29x; EOS frames +0 for all three
    spectral_factor=1.0,
    basis="EOS frame within 1; audio no farther than another seed's (small, random weights: w8 0.00x, mixed 0.07x, p4 "
    "0.29x)",
)

#: compressed variants store these as look-up tables (core: ``compress:constants``): the text table
#: (a row per token id) and each voice's prefilled cache; ``COMPRESSED_LOOP`` judges the loop with them
COMPRESSED_CONSTANTS = {"flowlm": ("text_embedding",), "voice_*": ("kv",)}
