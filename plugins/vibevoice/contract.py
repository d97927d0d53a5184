"""VibeVoice's run loop as data (the loop_contract hook): what a native app implements around the lm,
tts_lm, sampler and decoder packages. ``loop.py`` is the code it describes; the tests run that loop on
a recording runtime and check its calls against this."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...core import Call, Feed, FrontEnd, LoadStates, LoopContract, Repeat, Use, Voices
from .options import RunConfig


def _layers(presets: Path, voice: str) -> dict[str, int]:
    """How many layers the lm and tts_lm caches have, from a voice's preset (header only)."""
    from safetensors import safe_open

    with safe_open(str(presets), "np") as f:
        return {part: int(f.get_slice(f"{voice}.{part}_k").get_shape()[0]) for part in ("lm", "tts")}


def _states(prefix: str, layers: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.layers.{i}.self_attn.cache.{kind}" for kind in ("k", "v") for i in range(layers))


def contract(constants: Mapping[str, Any]) -> LoopContract:
    cfg = RunConfig.load(constants["config"])
    layers = _layers(Path(constants["presets"]), cfg.default_voice)
    window, hidden = cfg.text_window, cfg.hidden
    caches = len(cfg.decoder_cache_shapes)
    tts_lm = Call(
        "tts_lm",
        feeds=(
            Feed(
                "embeds",
                "loop",
                f"[2, {hidden}, 1, {window}]: row 0 the positive sequence, row 1 the negative (classifier-free "
                "guidance); a text window's lm hidden states + tts_input_types[1], or a speech latent's embed + "
                "tts_input_types[0] in slot 0 of both rows",
            ),
            Feed("position", "loop", "each sequence's next cache slot (positive, negative)"),
            Feed("valid", "loop", "how many slots of each row are real: [text rows, 0] or [1, 1]"),
        ),
        outputs=(
            Use("hidden", "each sequence's last real slot: the sampler's condition"),
            Use("eos", "end of speech when sigmoid(eos) > config eos_probability (after a speech step)"),
        ),
        states=_states("tts_lm", layers["tts"]),
    )
    text_window = Call(
        "tts_lm",
        feeds=tts_lm.feeds,
        outputs=tts_lm.outputs,
        states=tts_lm.states,
        optional=f"while the piece has text not yet in: its next {window} lm hidden states, before a speech window",
    )
    speech = Repeat(
        "latent",
        (
            Call(
                "sampler",
                feeds=(
                    Feed("condition", "output", "tts_lm's hidden of the positive and the negative sequence [2, H]"),
                    Feed("noise", "noise", f"standard normal [1, {cfg.latent}] (seeded)"),
                    Feed("cfg", "setting", f"--set cfg_scale (default {cfg.cfg_scale:g})"),
                ),
                outputs=(
                    Use("latent", "to the decoder"),
                    Use("embed", "the latent embedded: next into tts_lm"),
                ),
            ),
            Call(
                "decoder",
                feeds=(
                    Feed("latent", "output", "the sampler's latent"),
                    *(
                        Feed(f"cache{i}", "output", f"the previous call's new_cache{i}; zeros at the first")
                        for i in range(caches)
                    ),
                ),
                outputs=(
                    Use("audio", f"{cfg.samples_per_latent} samples at {cfg.sample_rate} Hz, appended"),
                    *(Use(f"new_cache{i}", f"fed back as cache{i} (one stream across pieces)") for i in range(caches)),
                ),
            ),
            Call(
                "tts_lm",
                feeds=tts_lm.feeds,
                outputs=tts_lm.outputs,
                states=tts_lm.states,
                optional="unless the latent ended the piece (max_seconds, or the cache full)",
            ),
        ),
        until=f"{cfg.speech_window} latents per window, or the piece ends: eos, --set max_seconds, tts_lm's cache full",
    )
    piece = Repeat(
        "piece",
        (
            LoadStates("lm", "the voice's lm cache (presets.safetensors <voice>.lm_k/lm_v at slots 0..)"),
            LoadStates(
                "tts_lm", "the voice's positive and negative caches (<voice>.tts_k/tts_v, neg_k/neg_v at slots 0..)"
            ),
            Repeat(
                f"chunk of {cfg.lm_chunk} tokens",
                (
                    Call(
                        "lm",
                        feeds=(
                            Feed(
                                "embeds",
                                "text",
                                f"[1, {hidden}, 1, {cfg.lm_chunk}]: the rows of embeddings.safetensors embed_tokens "
                                f"for the piece's next {cfg.lm_chunk} token ids, zero past the last",
                            ),
                            Feed("position", "loop", "the cache slot of the chunk's first token (after the voice's)"),
                            Feed("valid", "loop", "how many rows are real"),
                        ),
                        outputs=(Use("hidden", "the text's hidden states, kept for the tts_lm windows"),),
                        states=_states("lm", layers["lm"]),
                    ),
                ),
                until="every token of the piece",
            ),
            Repeat("window", (text_window, speech), until="the piece ends (eos, max_seconds or the cache full)"),
        ),
        until="every piece is spoken",
    )
    tokenizer = cfg.tokenizer_info
    return LoopContract(
        summary="VibeVoice speaks text in pieces that fit its caches: each piece's tokens through the lm, then "
        "windows of text hidden states into tts_lm alternating with speech latents sampled by diffusion "
        "(classifier-free guidance over a positive and a negative sequence) and decoded to audio as they come.",
        front_end=FrontEnd(
            "bytes" if tokenizer.kind == "bytes" else "tokenizer",
            (
                "the offline stand-in of --random-weights: UTF-8 bytes as ids"
                if tokenizer.kind == "bytes"
                else "Qwen2.5 tokenizer (tokenizer.json), no special tokens"
            )
            + "; the text stripped, a newline appended; cut into pieces of whole sentences that fit both caches "
            "with room for their speech",
            files=("config", "embeddings") if tokenizer.kind == "bytes" else ("tokenizer", "config", "embeddings"),
        ),
        voices=Voices(
            "a voice preset: the lm's and tts_lm's KV caches after the voice prompt, and the hidden states they "
            "leave (presets.safetensors <voice>.*), loaded into the packages' states for every piece",
            files=("presets",),
            names=tuple(cfg.voices),
        ),
        steps=(piece,),
        result=f"float32 audio at {cfg.sample_rate} Hz: every latent's samples, through one decoder stream",
    )
