"""Pocket TTS's run loop as data (the loop_contract hook): what a native app implements around the
flowlm, mimi and voice_encoder packages. ``loop.py`` is the code it describes; the tests run that loop
on a recording runtime and check its calls against this."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...core import Call, Feed, FrontEnd, LoopContract, Repeat, ResetStates, Use, Voices
from .options import RunConfig


def _state_names(path: Path) -> list[str]:
    """The Mimi decoder's streaming buffers, as mimi_init_state.safetensors names them (header only)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return sorted(f.keys())


def contract(constants: Mapping[str, Any]) -> LoopContract:
    cfg = RunConfig.load(constants["config"])
    names = _state_names(Path(constants["mimi_init_state"]))
    kv = f"the KV cache [{cfg.kv_layers}, 2, {cfg.cache_size}, {cfg.kv_width}] the loop holds (fp16 for fp16 packages)"
    prefill_feeds = (
        Feed("kv", "loop", kv),
        Feed("pos", "loop", "the cache slot of the block's first row"),
        Feed("valid", "loop", f"how many of the {cfg.chunk} rows are real"),
    )
    prefill_out = (Use("kv_new", "its first `valid` rows written into the cache at pos..pos+valid"),)
    clone = Repeat(
        "voice clone",
        (
            Call(
                "voice_encoder",
                feeds=(
                    Feed(
                        "audio",
                        "audio",
                        f"the recording at {cfg.sample_rate} Hz, cut at its last pause, zero-padded to "
                        f"{cfg.voice_prompt_samples} samples [1, 1, {cfg.voice_prompt_samples}]",
                    ),
                ),
                outputs=(
                    Use(
                        "conditioning",
                        f"the frames the recording covers (ceil(samples / {cfg.samples_per_frame})), after "
                        "flowlm.safetensors's bos_before_voice when it has one",
                    ),
                ),
            ),
            Repeat(
                f"block of {cfg.chunk} conditioning rows",
                (
                    Call(
                        "flowlm",
                        functions=("prefill",),
                        feeds=(
                            Feed("cond", "audio", "the conditioning rows, zero-padded to the block"),
                            *prefill_feeds,
                        ),
                        outputs=prefill_out,
                    ),
                ),
                until="every conditioning row is in the cache: the voice is the cache's first rows (kept for reuse)",
            ),
        ),
        until="once per recording",
        optional="when --voice is a recording whose clone is not cached yet",
    )
    mimi_feeds = [
        Feed(
            "quantized",
            "loop",
            f"{cfg.mimi_frames_per_call} latents, each un-normalised (latent * latent_std + latent_mean) and "
            "projected by flowlm.safetensors's quantizer, stacked along the last axis; a last group that is not "
            "full repeats its last latent",
        ),
        Feed("pos", "loop", f"{cfg.mimi_steps_per_frame * cfg.mimi_frames_per_call} more at each call, 0 per chunk"),
    ]
    if not cfg.mimi_stateful:
        mimi_feeds += [
            Feed(n, "output", f"the previous call's new_{n}; mimi_init_state.safetensors's {n} at a chunk's start")
            for n in names
        ]
    samples = cfg.samples_per_frame
    mimi = Call(
        "mimi",
        feeds=tuple(mimi_feeds),
        outputs=(
            Use(
                "audio",
                f"the group's samples ({samples} per real latent), faded in over the chunk's first "
                f"{cfg.fade_in_samples} samples, appended to the utterance",
            ),
            *(() if cfg.mimi_stateful else tuple(Use(f"new_{n}", f"fed back as {n}") for n in names)),
        ),
        states=tuple(f"s_{n}" for n in names) if cfg.mimi_stateful else (),
        overlaps=f"on a worker thread: each group of {cfg.mimi_frames_per_call} latents is decoded while the next "
        "frames are generated, in order; a chunk's last group is decoded after its last frame",
    )
    prefill = Repeat(
        f"block of {cfg.chunk} text rows",
        (
            Call(
                "flowlm",
                functions=("prefill",),
                feeds=(
                    Feed(
                        "cond",
                        "text",
                        "rows of flowlm.safetensors's text_embedding for the chunk's token ids, zero-padded (a "
                        "compressed variant stores the table as look-up tables: zoo.core.kit.constants)",
                    ),
                    *prefill_feeds,
                ),
                outputs=prefill_out,
            ),
        ),
        until="every token of the chunk is in the cache, after the voice's rows",
    )
    frame = Repeat(
        "frame",
        (
            Call(
                "flowlm",
                functions=("step",),
                feeds=(
                    Feed("latent", "output", "the previous step's latent_out; flowlm.safetensors's bos first"),
                    Feed(
                        "noise",
                        "noise",
                        "standard normal * sqrt(temperature) [1, latent] (zeros at temperature 0)",
                    ),
                    Feed("kv", "loop", kv),
                    Feed("pos", "loop", "the next free cache slot"),
                ),
                outputs=(
                    Use("latent_out", "the frame's latent: to mimi, and fed back"),
                    Use("eos_logit", "end of speech when above eos_threshold (after min_frames_before_eos)"),
                    Use("kv_new", "written into the cache at pos"),
                ),
            ),
        ),
        until="frames_after_eos frames after the first eos_logit above eos_threshold (the step that would "
        "pass it is not run), or the chunk's frame budget "
        f"(tokens / {cfg.tokens_per_second:g} + {cfg.gen_seconds_padding:g} s)",
    )
    # a stateful Mimi keeps its buffers in CoreML states: they start from zero at every chunk
    reset = (ResetStates("Mimi's CoreML states start from zero"),) if cfg.mimi_stateful else ()
    chunk = Repeat("text chunk", (prefill, *reset, frame, mimi), until="every chunk is spoken")
    tokenizer = "SentencePiece" if Path(constants["tokenizer"]).suffix == ".model" else "tokenizers JSON"
    return LoopContract(
        summary="Pocket TTS speaks text a chunk of sentences at a time: its tokens prefill flowlm's KV cache after "
        "the voice's, flowlm steps one latent per frame until end of speech, and Mimi decodes the latents to "
        "audio on a worker thread as they come.",
        front_end=FrontEnd(
            "tokenizer",
            f"{tokenizer} tokenizer (constants `tokenizer`); the text normalised by config.json's text_rules "
            f"(capitalised, terminal punctuation, characters replaced), split into chunks of whole sentences of at "
            f"most {cfg.max_tokens_per_chunk} tokens (commas for longer ones)",
            files=("tokenizer", "config", "flowlm"),
        ),
        voices=Voices(
            "a bundled voice is a prefilled KV cache (voice_<name>.safetensors: kv [layers, 2, length, width] and "
            "length), copied into the cache's first rows for every chunk; or a clone of a WAV recording (the "
            "optional block below), computed once",
            files=tuple(f"voice_{n}" for n in cfg.voices),
            names=tuple(cfg.voices),
        ),
        steps=(clone, chunk),
        result=f"float32 audio at {cfg.sample_rate} Hz: the chunks' samples concatenated",
    )
