"""run_loop for VibeVoice-Realtime: numpy orchestration of upstream's generate over the components.

text -> tokens (text + "\\n", as upstream's processor) -> ``lm`` on whole chunks of tokens ->
windows of 5 text positions through ``tts_lm`` (positive path only) -> after each window 6
speech latents: ``sampler`` on the positive and negative tts_lm states (CFG), ``decoder``
streams the latent to 3200 samples, the latent's embedding goes back through ``tts_lm`` on
both paths (one call, batch 2), whose EOS logit ends the utterance. The voice preset fills
the lm and tts_lm KV states before the first call.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ...core import RunOptions, RunResult, Runtime, Timing
from .options import RunConfig


def tokenize(text: str, cfg: RunConfig, tokenizer_file: Any = None) -> list[int]:
    """Upstream's processor: the stripped text plus a newline, no special tokens."""
    return encoder(cfg, tokenizer_file)(text)


def encoder(cfg: RunConfig, tokenizer_file: Any = None) -> Any:
    """``tokenize`` with the tokenizer file read once (the text splitter asks for many counts)."""
    tok = cfg.tokenizer_info
    if tok.kind == "bytes":  # the --random-weights stand-in
        return lambda text: [1 + b % (tok.vocab - 2) for b in (text.strip() + "\n").encode("utf-8")]
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(tokenizer_file))
    return lambda text: loaded.encode(text.strip() + "\n", add_special_tokens=False).ids


def cache_states(parts: list[tuple[np.ndarray, np.ndarray]], capacity: int, prefix: str) -> dict[str, np.ndarray]:
    """The KV-cache state buffers ``<prefix>.layers.N.self_attn.cache.k|v`` [batch, kv_heads, capacity, D] (fp16),
    sequence b holding ``parts[b]``'s keys and values [layers, kv_heads, T, D] at slots 0..T-1."""
    states = {}
    for kind, index in (("k", 0), ("v", 1)):
        _, kv_heads, _, head_dim = parts[0][index].shape
        for layer in range(parts[0][index].shape[0]):
            buf = np.zeros((len(parts), kv_heads, capacity, head_dim), np.float16)
            for b, part in enumerate(parts):
                rows = part[index][layer]
                buf[b, :, : rows.shape[1]] = rows
            states[f"{prefix}.layers.{layer}.self_attn.cache.{kind}"] = buf
    return states


def voice_states(presets: dict[str, np.ndarray], voice: str, cfg: RunConfig) -> tuple[dict, dict, dict[str, Any]]:
    """lm and tts_lm state values for ``voice``, and the positions/hidden states they leave."""
    get = lambda name: presets[f"{voice}.{name}"]  # noqa: E731
    lm_len, tts_len, neg_len = get("lm_k").shape[2], get("tts_k").shape[2], get("neg_k").shape[2]
    if lm_len > cfg.lm_capacity or max(tts_len, neg_len) > cfg.tts_capacity:
        raise ValueError(f"voice {voice!r} is longer than the export's caches")
    lm_states = cache_states([(get("lm_k"), get("lm_v"))], cfg.lm_capacity, "lm")
    tts_states = cache_states([(get("tts_k"), get("tts_v")), (get("neg_k"), get("neg_v"))], cfg.tts_capacity, "tts_lm")
    start = {
        "lm": lm_len,
        "tts": tts_len,
        "neg": neg_len,
        "tts_hidden": get("tts_hidden").astype(np.float32),
        "neg_hidden": get("neg_hidden").astype(np.float32),
    }
    return lm_states, tts_states, start


def voices(constants: Mapping[str, Any]) -> list[str]:
    """The export's voice names (the list_voices hook)."""
    return list(RunConfig.load(constants["config"]).voices)


#: speech a text piece is given room for in the tts_lm cache, in latents per text token: English
#: speech runs ~2.3 latents (7.5 per second) per Qwen2 token (~3.3 tokens per second), so 3 leaves
#: a margin; more would make pieces shorter, fewer risks a piece ending at the cache before EOS
LATENTS_PER_TOKEN = 3
#: and for the tail after the last word (2 s)
TAIL_LATENTS = 15


def fits_caches(n_tokens: int, start: dict[str, Any], cfg: RunConfig) -> bool:
    """A piece of ``n_tokens`` fits both caches after the voice, with room for its speech."""
    speech = LATENTS_PER_TOKEN * n_tokens + TAIL_LATENTS
    return (
        start["lm"] + n_tokens <= cfg.lm_capacity
        and max(start["tts"], start["neg"]) + n_tokens + speech + cfg.text_window <= cfg.tts_capacity
    )


def run(runtime: Runtime, text: str, options: RunOptions, max_latents: int | None = None) -> RunResult:
    """Speak ``text`` as consecutive pieces that fit the export's caches (core.text.pieces: whole
    sentences where they fit), each an utterance from the voice preset, through one decoder stream."""
    from safetensors.numpy import load_file

    from ...core.kit.constants import load_constants
    from ...core.kit.text import pieces

    settings = options.typed_values()  # --set, typed once by the core (RUN_SETTINGS)
    cfg = RunConfig.load(runtime.constants["config"])
    presets = load_file(str(runtime.constants["presets"]))
    embeddings = load_constants(runtime.constants["embeddings"])  # the token table may be stored as look-up tables
    types, table = embeddings["tts_input_types"], embeddings["embed_tokens"]
    voice = options.voice or cfg.default_voice
    if voice not in cfg.voices:
        raise ValueError(f"unknown voice {voice!r}; this export has {', '.join(cfg.voices)}")
    cfg_scale = settings.get("cfg_scale", cfg.cfg_scale)
    if max_latents is None:
        max_latents = math.ceil(settings.get("max_seconds", 30.0) * cfg.sample_rate / cfg.samples_per_latent)
    encode = encoder(cfg, runtime.constants.get("tokenizer"))
    lm_states, tts_states, start = voice_states(presets, voice, cfg)
    if not fits_caches(1, start, cfg):
        raise ValueError(f"voice {voice!r} leaves no room for text in the export's caches")
    parts = pieces(text, lambda piece: fits_caches(len(encode(piece)), start, cfg))
    if not parts:
        raise ValueError("text to speak is empty")
    rng = np.random.default_rng(options.seed)
    decoder = [np.zeros(shape, np.float32) for shape in cfg.decoder_cache_shapes]  # one stream: no seam between pieces
    audio, latents, report = [], 0, []
    for part in parts:
        ids = encode(part)
        runtime.load_states("lm", lm_states)
        runtime.load_states("tts_lm", tts_states)
        piece, decoder, ended = _utterance(
            runtime, ids, start, cfg, types, table, rng, cfg_scale, max_latents, decoder, options
        )
        before = sum(len(a) for a in audio)
        audio.extend(piece)
        latents += len(piece)
        if piece:  # the piece's span: vibevoice predicts no word durations
            after = before + sum(len(a) for a in piece)
            options.emit_timings([Timing(part, before / cfg.sample_rate, after / cfg.sample_rate, "piece")])
        report.append({"text": part, "text_tokens": len(ids), "latents": len(piece), "ended": ended})
    info = {"voice": voice, "pieces": report, "tokenizer": cfg.tokenizer_info.kind}
    samples = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    return RunResult(samples, cfg.sample_rate, latents, info)


def _utterance(
    runtime: Runtime,
    ids: list[int],
    start: dict[str, Any],
    cfg: RunConfig,
    types: Any,
    table: Any,
    rng: Any,
    cfg_scale: float,
    max_latents: int,
    caches: list[Any],
    options: RunOptions,
) -> tuple[list[Any], list[Any], str]:
    """One piece, as upstream's generate: (audio per latent, the decoder caches after it, why it ended:
    eos | max_seconds | cache). The lm and tts_lm states hold the voice preset when called."""
    hidden, chunk, window = cfg.hidden, cfg.lm_chunk, cfg.text_window
    # the lm over all the text, a chunk at a time (it never sees speech), as the tokens' table rows
    text_hidden = np.zeros((len(ids), hidden), np.float32)
    for at in range(0, len(ids), chunk):
        n = min(chunk, len(ids) - at)
        embeds = np.zeros((1, hidden, 1, chunk), np.float32)
        embeds[0, :, 0, :n] = table[ids[at : at + n]].T
        out = runtime(
            "lm",
            {"embeds": embeds, "position": np.array([start["lm"] + at], np.int32), "valid": np.array([n], np.int32)},
        )["hidden"]
        text_hidden[at : at + n] = np.asarray(out, np.float32)[0, :, 0, :n].T

    pos, neg = start["tts"], start["neg"]
    pos_hidden, neg_hidden = start["tts_hidden"], start["neg_hidden"]
    audio: list[Any] = []
    w = 0

    def tts_lm(embeds: Any, valid: list[int]) -> tuple[Any, Any]:
        out = runtime(
            "tts_lm", {"embeds": embeds, "position": np.array([pos, neg], np.int32), "valid": np.array(valid, np.int32)}
        )
        return np.asarray(out["hidden"], np.float32), np.asarray(out["eos"], np.float32)

    while True:
        rows = text_hidden[w * window : (w + 1) * window]
        w += 1
        if len(rows) and max(pos, neg) + window > cfg.tts_capacity:
            return audio, caches, "cache"
        if len(rows):
            embeds = np.zeros((2, hidden, 1, window), np.float32)
            embeds[0, :, 0, : len(rows)] = (rows + types[1]).T
            h, _ = tts_lm(embeds, [len(rows), 0])
            pos += len(rows)
            pos_hidden = h[0, :, 0, len(rows) - 1]
        for _ in range(cfg.speech_window):
            noise = rng.standard_normal((1, cfg.latent)).astype(np.float32)
            out = runtime(
                "sampler",
                {
                    "condition": np.stack([pos_hidden, neg_hidden]),
                    "noise": noise,
                    "cfg": np.array([cfg_scale], np.float32),
                },
            )
            latent, embed = np.asarray(out["latent"], np.float32), np.asarray(out["embed"], np.float32)
            decoded = runtime("decoder", {"latent": latent, **{f"cache{i}": c for i, c in enumerate(caches)}})
            caches = [np.asarray(decoded[f"new_cache{i}"], np.float32) for i in range(len(caches))]
            audio.append(np.asarray(decoded["audio"], np.float32).reshape(-1))
            options.emit(audio[-1])
            if len(audio) >= max_latents:
                return audio, caches, "max_seconds"
            if max(pos, neg) + window > cfg.tts_capacity:  # fits_caches leaves room for 3 latents per token: rare
                return audio, caches, "cache"
            embeds = np.zeros((2, hidden, 1, window), np.float32)
            embeds[:, :, 0, 0] = embed[0] + types[0]
            h, eos = tts_lm(embeds, [1, 1])
            pos, neg = pos + 1, neg + 1
            pos_hidden, neg_hidden = h[0, :, 0, 0], h[1, :, 0, 0]
            if 1.0 / (1.0 + math.exp(-float(eos[0, 0, 0, 0]))) > cfg.eos_probability:
                return audio, caches, "eos"
