"""build_traceables for VibeVoice-Realtime-0.5B: lm, tts_lm, sampler, decoder.

* ``lm`` — the lower 4 Qwen2 layers in the Neural Engine layout (lm.py): up to ``lm_chunk``
  text tokens per call (not the tts_lm's 5-token windows: text needs no speech feedback, so
  whole sentences go in at once), KV cache as CoreML states prefilled with the voice. The tokens
  arrive as their rows of the token table, which the host looks up: the table is a constant
  (``embeddings.safetensors`` ``embed_tokens``, constants.py) a compressed variant may store as
  look-up tables.
* ``tts_lm`` — the upper 20 layers, batch 2 (positive and negative CFG paths, each with its
  own state-held cache), 5 positions per call: a text window on the positive path
  (``valid = [n, 0]``) or one speech latent on both (``valid = [1, 1]``); also returns the
  EOS classifier's logit at every position.
* ``sampler`` — diffusion head, 5 DPM-Solver++ steps, CFG and acoustic connector (diffusion.py).
* ``decoder`` — the streaming acoustic decoder, one latent -> 3200 samples, caches explicit
  (acoustic.py); the latent's scaling (``latent / scaling - bias``) is folded in.

CoreML states are fp16 only, so the KV caches are fp16 in every variant (the torch modules
too, so that reference parity measures what the packages will compute). Rows past ``valid``
write no cache entry and return zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...core import StateSpec, TensorSpec, Traceable
from ...core.kit.ane import Conv1x1
from . import config as C
from .acoustic import StreamingDecoder
from .diffusion import Sampler, solver_steps, upstream_sample
from .lm import AneQwen2, from_qwen2
from .loop import cache_states
from .options import VibeVoiceOptions
from .reference import VibeVoice, eos_logit, preset_cache

CACHE_DTYPE = torch.float16


def _keep(valid: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """[B, 1, 1, L]: 1 for rows below ``valid``."""
    steps = torch.arange(length, dtype=torch.int32).view(1, 1, 1, length)
    return (steps < valid.view(batch, 1, 1, 1).to(torch.int32)).to(torch.float32)


class LmStep(nn.Module):
    """embeds [1, C, 1, L] (token table rows), position [1], valid [1] -> hidden [1, C, 1, L] (zeros past valid)."""

    def __init__(self, lm: AneQwen2):
        super().__init__()
        self.lm = lm

    def forward(self, embeds: torch.Tensor, position: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.lm(embeds, position, valid) * _keep(valid, 1, self.lm.chunk)


class TtsLmStep(nn.Module):
    """embeds [2, C, 1, L], position [2], valid [2] -> hidden [2, C, 1, L], eos [2, 1, 1, L] (zeros past valid)."""

    def __init__(self, tts_lm: AneQwen2, eos: nn.Module):
        super().__init__()
        self.tts_lm = tts_lm
        self.eos_fc1 = Conv1x1.from_linear(eos.fc1)
        self.eos_fc2 = Conv1x1.from_linear(eos.fc2)

    def forward(
        self, embeds: torch.Tensor, position: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = _keep(valid, 2, self.tts_lm.chunk)
        hidden = self.tts_lm(embeds, position, valid)
        eos = self.eos_fc2(torch.relu(self.eos_fc1(hidden)))
        return hidden * keep, eos * keep


class DecoderStep(nn.Module):
    """latent [1, 64] (the sampler's) + caches -> audio [1, 3200] + caches."""

    def __init__(self, decoder: nn.Module, scaling: float, bias: float):
        super().__init__()
        self.stream = StreamingDecoder(decoder)
        self.scaling, self.bias = float(scaling), float(bias)

    def forward(self, latent: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        audio, *new = self.stream((latent / self.scaling - self.bias).unsqueeze(-1), *caches)
        return (audio.reshape(1, -1), *new)


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (what the released presets store; exact in fp16 within its range)."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16).float().numpy()


def token_table(model: VibeVoice) -> np.ndarray:
    """The lm's token table [vocab, C] as float32 (upstream's ``lm.embed_tokens``)."""
    return model.lm.embed_tokens.weight.detach().float().numpy()


def load_buffers(module: nn.Module, states: dict[str, np.ndarray]) -> None:
    buffers = dict(module.named_buffers())
    with torch.no_grad():
        for name, value in states.items():
            buffers[name].copy_(torch.from_numpy(value))


def build(model: VibeVoice, options: VibeVoiceOptions, precision: str = "fp32") -> dict[str, Traceable]:
    cfg = model.cfg["decoder"]
    hidden = cfg["hidden_size"]
    preset = {
        part: {k: _bf16(v) for k, v in arrays.items()} for part, arrays in next(iter(model.presets.values())).items()
    }
    rng = np.random.default_rng(0)

    # -- lm
    chunk, capacity = options.lm_chunk, options.lm_capacity
    lm = from_qwen2(model.lm, cfg, chunk, capacity, final_norm=False, cache_dtype=CACHE_DTYPE)
    table = token_table(model)
    lm_states = cache_states([(preset["lm"]["k"], preset["lm"]["v"])], capacity, "lm")
    lm_step = LmStep(lm).eval()
    load_buffers(lm_step, lm_states)
    start = preset["lm"]["k"].shape[2]
    lm_examples = []
    for n in (chunk, max(1, chunk // 2 - 1)):
        embeds = np.zeros((1, hidden, 1, chunk), np.float32)
        embeds[0, :, 0, :n] = table[rng.integers(0, cfg["vocab_size"], n)].T
        lm_examples.append(
            {"embeds": embeds, "position": np.array([start], np.int32), "valid": np.array([n], np.int32)}
        )

    def lm_reference(embeds: Any, position: Any, valid: Any) -> dict[str, Any]:
        n, pos = int(valid[0]), int(position[0])
        cache = preset_cache(preset["lm"])
        with torch.no_grad():
            out = model.lm(
                inputs_embeds=torch.from_numpy(np.ascontiguousarray(embeds[0, :, 0, :n].T))[None],
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.arange(pos, pos + n)[None],
            ).last_hidden_state
        full = np.zeros((1, hidden, 1, chunk), out.numpy().dtype)  # float64 in the float64 parity check
        full[0, :, 0, :n] = out[0].numpy().T
        return {"hidden": full}

    lm_traceable = Traceable(
        lm_step,
        [
            TensorSpec("embeds", (1, hidden, 1, chunk)),
            TensorSpec("position", (1,), "int32"),
            TensorSpec("valid", (1,), "int32"),
        ],
        ["hidden"],
        lm_examples,
        reference=lm_reference,
        states=[StateSpec(name, tuple(lm_step.get_buffer(name).shape), "float16") for name in lm_states],
    )

    # -- tts_lm: positive and negative paths
    window, tts_capacity = C.TEXT_WINDOW, options.tts_capacity
    tts = from_qwen2(model.tts_lm, cfg, window, tts_capacity, final_norm=True, cache_dtype=CACHE_DTYPE, batch=2)
    tts_states = cache_states(
        [(preset[p]["k"], preset[p]["v"]) for p in ("tts_lm", "neg_tts_lm")], tts_capacity, "tts_lm"
    )
    tts_step = TtsLmStep(tts, model.eos).eval()
    load_buffers(tts_step, tts_states)
    pos0, neg0 = preset["tts_lm"]["k"].shape[2], preset["neg_tts_lm"]["k"].shape[2]
    text_embeds = np.zeros((2, hidden, 1, window), np.float32)
    text_embeds[0, :, 0, :] = rng.standard_normal((hidden, window))
    speech_embeds = np.zeros((2, hidden, 1, window), np.float32)
    speech_embeds[:, :, 0, 0] = rng.standard_normal((1, hidden))
    tts_examples = [
        {"embeds": text_embeds, "position": np.array([pos0, neg0], np.int32), "valid": np.array([window, 0], np.int32)},
        {"embeds": speech_embeds, "position": np.array([pos0, neg0], np.int32), "valid": np.array([1, 1], np.int32)},
    ]

    def tts_reference(embeds: Any, position: Any, valid: Any) -> dict[str, Any]:
        out_h = np.zeros((2, hidden, 1, window), embeds.dtype)  # float64 in the float64 parity check
        out_e = np.zeros((2, 1, 1, window), embeds.dtype)
        for b, part in enumerate(("tts_lm", "neg_tts_lm")):
            n, pos = int(valid[b]), int(position[b])
            if n == 0:
                continue
            x = torch.from_numpy(np.ascontiguousarray(embeds[b, :, 0, :n].T))[None]
            with torch.no_grad():
                h = model.tts_lm(
                    inputs_embeds=x,
                    past_key_values=preset_cache(preset[part]),
                    use_cache=True,
                    position_ids=torch.arange(pos, pos + n)[None],
                ).last_hidden_state
                e = eos_logit(model, h)
            out_h[b, :, 0, :n] = h[0].numpy().T
            out_e[b, 0, 0, :n] = e[0, :, 0].numpy()
        return {"hidden": out_h, "eos": out_e}

    tts_traceable = Traceable(
        tts_step,
        [
            TensorSpec("embeds", (2, hidden, 1, window)),
            TensorSpec("position", (2,), "int32"),
            TensorSpec("valid", (2,), "int32"),
        ],
        ["hidden", "eos"],
        tts_examples,
        reference=tts_reference,
        states=[StateSpec(name, tuple(tts_step.get_buffer(name).shape), "float16") for name in tts_states],
    )

    # -- sampler
    sampler = Sampler(model.head, model.connector, solver_steps(), solver_steps(betas_dtype=np.float64)).eval()
    sampler_examples = [
        {
            "condition": rng.standard_normal((2, hidden)).astype(np.float32),
            "noise": rng.standard_normal((1, C.LATENT)).astype(np.float32),
            "cfg": np.array([1.5], np.float32),
        }
        for _ in range(2)
    ]

    def sampler_reference(condition: Any, noise: Any, cfg: Any) -> dict[str, Any]:
        latent = upstream_sample(model.head, condition, noise, float(cfg[0]))
        with torch.no_grad():
            embed = model.connector(torch.from_numpy(latent)).numpy()
        return {"latent": latent, "embed": embed}

    sampler_traceable = Traceable(
        sampler,
        [TensorSpec("condition", (2, hidden)), TensorSpec("noise", (1, C.LATENT)), TensorSpec("cfg", (1,))],
        ["latent", "embed"],
        sampler_examples,
        reference=sampler_reference,
    )

    # -- decoder
    decoder = DecoderStep(model.decoder, model.scaling, model.bias).eval()
    shapes = decoder.stream.cache_shapes()
    names = [f"cache{i}" for i in range(len(shapes))]
    latents = [rng.standard_normal((1, C.LATENT)).astype(np.float32) for _ in range(2)]
    decoder_examples = []
    caches = [np.zeros(s, np.float32) for s in shapes]
    for latent in latents:  # the second example continues from the first one's caches
        example = {"latent": latent, **dict(zip(names, caches))}
        decoder_examples.append(example)
        with torch.no_grad():
            _, *new = decoder(torch.from_numpy(latent), *(torch.from_numpy(c) for c in caches))
        caches = [c.numpy() for c in new]

    def decoder_reference(latent: Any, **caches_in: Any) -> dict[str, Any]:
        from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
            VibeVoiceAcousticTokenizerConv1dPaddingCache,
        )

        # transformers' streaming decode from the same caches: replay them into its padding cache
        padding = VibeVoiceAcousticTokenizerConv1dPaddingCache()
        stream = decoder.stream
        for module, name in zip(stream.convs, names):
            padding.layers[module.cache_key] = _cache_layer(module, caches_in[name])
        scaled = torch.from_numpy(latent) / model.scaling - model.bias
        with torch.no_grad():
            audio = model.decoder(scaled.unsqueeze(-1), padding_cache=padding, use_cache=True).audio
        out = {"audio": audio.reshape(1, -1).numpy()}
        for module, name in zip(stream.convs, names):
            out[f"new_{name}"] = padding.layers[module.cache_key].cache.numpy()
        return out

    decoder_traceable = Traceable(
        decoder,
        [TensorSpec("latent", (1, C.LATENT))] + [TensorSpec(n, s) for n, s in zip(names, shapes)],
        ["audio"] + [f"new_{n}" for n in names],
        decoder_examples,
        reference=decoder_reference,
    )
    return {"lm": lm_traceable, "tts_lm": tts_traceable, "sampler": sampler_traceable, "decoder": decoder_traceable}


def _cache_layer(module: nn.Module, value: Any) -> Any:
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerConv1dCacheLayer,
    )

    layer = VibeVoiceAcousticTokenizerConv1dCacheLayer()
    layer.left_pad, layer.in_channels, layer.is_initialized = module.left_pad, module.in_channels, True
    layer.cache = torch.from_numpy(np.array(value))
    return layer
