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

from ...core import RunOptions, RunResult
from .options import RUN_SETTINGS, RunConfig

def parse_settings(settings: dict[str, str]) -> dict[str, Any]:
    return RunOptions(settings=settings).typed(RUN_SETTINGS, "vibevoice")


def tokenize(text: str, cfg: RunConfig, tokenizer_file: Any = None) -> list[int]:
    """Upstream's processor: the stripped text plus a newline, no special tokens."""
    script = text.strip() + "\n"
    tok = cfg.tokenizer_info
    if tok.kind == "bytes":  # the --random-weights stand-in
        return [1 + b % (tok.vocab - 2) for b in script.encode("utf-8")]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_file)).encode(script, add_special_tokens=False).ids


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
    start = {"lm": lm_len, "tts": tts_len, "neg": neg_len, "tts_hidden": get("tts_hidden").astype(np.float32), "neg_hidden": get("neg_hidden").astype(np.float32)}
    return lm_states, tts_states, start


def voices(constants: Mapping[str, Any]) -> list[str]:
    """The export's voice names (the list_voices hook)."""
    return list(RunConfig.load(constants["config"]).voices)


def run(runtime: Any, text: str, options: RunOptions, max_latents: int | None = None) -> RunResult:
    from safetensors.numpy import load_file

    cfg = RunConfig.load(runtime.constants["config"])
    settings = parse_settings(options.settings)
    presets = load_file(str(runtime.constants["presets"]))
    types = load_file(str(runtime.constants["embeddings"]))["tts_input_types"]
    voice = options.voice or cfg.default_voice
    if voice not in cfg.voices:
        raise ValueError(f"unknown voice {voice!r}; this export has {', '.join(cfg.voices)}")
    cfg_scale = settings.get("cfg_scale", cfg.cfg_scale)
    if max_latents is None:
        max_latents = math.ceil(settings.get("max_seconds", 30.0) * cfg.sample_rate / cfg.samples_per_latent)
    ids = tokenize(text, cfg, runtime.constants.get("tokenizer"))
    lm_states, tts_states, start = voice_states(presets, voice, cfg)
    if start["lm"] + len(ids) > cfg.lm_capacity:
        raise ValueError(f"{len(ids)} text tokens do not fit the lm cache ({cfg.lm_capacity - start['lm']} left after the voice)")
    runtime.load_states("lm", lm_states)
    runtime.load_states("tts_lm", tts_states)
    hidden, chunk, window = cfg.hidden, cfg.lm_chunk, cfg.text_window

    # the lm over all the text, a chunk at a time (it never sees speech)
    text_hidden = np.zeros((len(ids), hidden), np.float32)
    for at in range(0, len(ids), chunk):
        n = min(chunk, len(ids) - at)
        padded = np.zeros((1, chunk), np.int32)
        padded[0, :n] = ids[at : at + n]
        out = runtime("lm", {"ids": padded, "position": np.array([start["lm"] + at], np.int32), "valid": np.array([n], np.int32)})["hidden"]
        text_hidden[at : at + n] = np.asarray(out, np.float32)[0, :, 0, :n].T

    rng = np.random.default_rng(options.seed)
    caches = [np.zeros(shape, np.float32) for shape in cfg.decoder_cache_shapes]
    pos, neg = start["tts"], start["neg"]
    pos_hidden, neg_hidden = start["tts_hidden"], start["neg_hidden"]
    pieces, eos_at, latents, w = [], None, 0, 0

    def tts_lm(embeds: Any, valid: list[int]) -> tuple[Any, Any]:
        if max(pos, neg) + window > cfg.tts_capacity:
            raise ValueError(f"the utterance outgrew the tts_lm cache ({cfg.tts_capacity} positions); use shorter text or --set max_seconds")
        out = runtime("tts_lm", {"embeds": embeds, "position": np.array([pos, neg], np.int32), "valid": np.array(valid, np.int32)})
        return np.asarray(out["hidden"], np.float32), np.asarray(out["eos"], np.float32)

    while eos_at is None and latents < max_latents:
        rows = text_hidden[w * window : (w + 1) * window]
        w += 1
        if len(rows):
            embeds = np.zeros((2, hidden, 1, window), np.float32)
            embeds[0, :, 0, : len(rows)] = (rows + types[1]).T
            h, _ = tts_lm(embeds, [len(rows), 0])
            pos += len(rows)
            pos_hidden = h[0, :, 0, len(rows) - 1]
        for _ in range(cfg.speech_window):
            noise = rng.standard_normal((1, cfg.latent)).astype(np.float32)
            out = runtime("sampler", {"condition": np.stack([pos_hidden, neg_hidden]), "noise": noise, "cfg": np.array([cfg_scale], np.float32)})
            latent, embed = np.asarray(out["latent"], np.float32), np.asarray(out["embed"], np.float32)
            decoded = runtime("decoder", {"latent": latent, **{f"cache{i}": c for i, c in enumerate(caches)}})
            caches = [np.asarray(decoded[f"new_cache{i}"], np.float32) for i in range(len(caches))]
            pieces.append(np.asarray(decoded["audio"], np.float32).reshape(-1))
            options.emit(pieces[-1])
            latents += 1
            embeds = np.zeros((2, hidden, 1, window), np.float32)
            embeds[:, :, 0, 0] = embed[0] + types[0]
            h, eos = tts_lm(embeds, [1, 1])
            pos, neg = pos + 1, neg + 1
            pos_hidden, neg_hidden = h[0, :, 0, 0], h[1, :, 0, 0]
            if 1.0 / (1.0 + math.exp(-float(eos[0, 0, 0, 0]))) > cfg.eos_probability:
                eos_at = latents
                break
            if latents >= max_latents:
                break
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    info = {"voice": voice, "text_tokens": len(ids), "latents": latents, "eos_latent": eos_at, "tokenizer": cfg.tokenizer_info.kind}
    return RunResult(audio, cfg.sample_rate, latents, info)
