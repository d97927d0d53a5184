"""The ``flowlm`` component: one package, two functions sharing the transformer weights.

- ``prefill``: a chunk of conditioning tokens [1, C, d] written into the KV cache at ``pos``; only the
  first ``valid`` tokens are written, so padding never creates cache entries nor advances the position.
- ``step``: one generation step — the transformer on the previous latent, the EOS logit and every
  decode step of the flow head, fused, with the noise as an input.

Both run the same :class:`CachedTransformer`, so prefill and step cannot diverge, and the cache is
written by the caller with a mask blend: index writes on a cache tensor are what coremltools can
drop silently.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core import TensorSpec, Traceable
from .layers import CachedTransformer, _rows, to_numpy
from .options import PocketOptions


class Prefill(nn.Module):
    """flowlm.prefill: keys/values of ``valid`` conditioning tokens at ``pos`` (zeros for the padding)."""

    def __init__(self, flow_lm: nn.Module, cache_size: int):
        super().__init__()
        self.transformer = CachedTransformer(flow_lm.transformer, cache_size)

    def forward(self, cond: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        _, rows = self.transformer(cond, kv, pos, valid)
        return _rows(rows, len(self.transformer.layers))


class Step(nn.Module):
    """flowlm.step: transformer on the previous latent, EOS logit and the fused flow decode.

    The sampler head is upstream's: ``lsd`` (``decode_steps`` Euler steps with two time
    conditions), ``drifting`` (one call on the noise: the sample is the head's output) or
    ``pointwise`` (the noise plus the head's output). With ``z_dim`` set (the small family)
    a bias-free projection of the normed hidden state feeds both the EOS and sampler heads.
    """

    def __init__(
        self, flow_lm: nn.Module, cache_size: int, decode_steps: int, transformer: CachedTransformer | None = None
    ):
        super().__init__()
        self.transformer = transformer or CachedTransformer(flow_lm.transformer, cache_size)
        self.input_linear = flow_lm.input_linear
        self.out_norm = flow_lm.out_norm
        self.out_eos = flow_lm.out_eos
        self.flow_net = flow_lm.flow_net
        self.z_proj = flow_lm.z_proj  # None outside the small family
        if flow_lm.flow_type not in ("lsd", "drifting", "pointwise"):
            raise NotImplementedError(
                f"the {flow_lm.flow_type!r} sampler head is not ported (lsd, drifting and pointwise are)"
            )
        self.flow_type = flow_lm.flow_type
        self.decode_steps = decode_steps

    def forward(
        self, latent: torch.Tensor, noise: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.input_linear(latent.view(1, 1, -1))
        one = torch.ones(1, dtype=torch.int32)
        hidden, rows = self.transformer(x, kv, pos, one)
        hidden = self.out_norm(hidden)[:, -1]  # [1, d]
        if self.z_proj is not None:
            hidden = self.z_proj(hidden)  # [1, z_dim]
        hidden = hidden.to(torch.float32)
        eos = self.out_eos(hidden)
        if self.flow_type == "drifting":  # upstream's drifting_decode: the sample is the head's output
            return self.flow_net(hidden, noise), eos, _rows(rows, len(self.transformer.layers))
        if self.flow_type == "pointwise":  # upstream's pointwise_decode: LSD's single 0 -> 1 step, no time
            return noise + self.flow_net(hidden, noise), eos, _rows(rows, len(self.transformer.layers))
        current = noise
        n = self.decode_steps
        for i in range(n):  # s = i/N, t = (i+1)/N
            s = torch.full_like(noise[..., :1], i / n)
            t = torch.full_like(noise[..., :1], (i + 1) / n)
            current = current + self.flow_net(hidden, s, t, current) / n
        return current, eos, _rows(rows, len(self.transformer.layers))


def write_rows(kv: Any, rows: Any, pos: int, count: int) -> Any:
    """The cache after storing the first ``count`` new rows [layers, 2, C, HD] at ``pos`` (a copy)."""
    import numpy as np

    out = np.array(kv, dtype=np.float32, copy=True)
    out[:, :, pos : pos + count] = np.asarray(rows)[:, :, :count]
    return out


def voice_cache(state: dict[str, Any], cache_size: int) -> tuple[Any, int]:
    """An upstream voice model_state -> (kv [layers, 2, S, H*D] zero-padded, voice length)."""
    import numpy as np

    layers = sorted(state, key=lambda n: int(n.split(".")[2]))
    length = int(state[layers[0]]["offset"].view(-1)[0])
    first = state[layers[0]]["cache"]
    kv = np.zeros((len(layers), 2, cache_size, first.shape[-2] * first.shape[-1]), dtype=np.float32)
    if length > cache_size:
        raise ValueError(f"voice prompt of {length} tokens does not fit a cache of {cache_size}")
    for i, name in enumerate(layers):
        kv[i, :, :length] = to_numpy(state[name]["cache"][:, 0, :length]).reshape(2, length, -1)
    return kv, length


def build_flowlm(ref: Any, options: PocketOptions, precision: str, rng: Any) -> dict[str, Traceable]:
    """``prefill`` and ``step`` with their parity examples: the voice prompt from an empty cache, then a
    padded text chunk after the voice (its padding rows hold garbage: it must not leak)."""
    import numpy as np

    from . import reference as upstream

    tts = ref.tts
    flow = tts.flow_lm
    cache, chunk, steps = options.cache_size, options.chunk, options.decode_steps
    state_dtype = "float16" if precision == "fp16" else "float32"
    d = flow.dim
    layers = len(flow.transformer.layers)
    prefill = Prefill(flow, cache).eval()
    hd = prefill.transformer.kv_width
    step = Step(flow, cache, steps, transformer=prefill.transformer).eval()
    # parity inputs: the voice prompt from an empty cache, then a padded text chunk after the voice
    voice_name = next(iter(ref.voices))
    voice_kv, voice_len = voice_cache(ref.voices[voice_name], cache)
    prompt = ref.voice_prompts.get(voice_name)
    first = np.zeros((1, chunk, d), dtype=np.float32)
    n_first = min(chunk, voice_len)
    if prompt is not None:
        first[:, :n_first] = to_numpy(prompt[:, :n_first])
    else:
        first[:, :n_first] = rng.standard_normal((1, n_first, d))
    text = (rng.standard_normal((1, chunk, d)) * 0.5).astype(np.float32)  # padding rows hold garbage: it must not leak
    kv_spec = TensorSpec("kv", (layers, 2, cache, hd), state_dtype)
    prefill_examples = [
        {
            "cond": first,
            "kv": np.zeros((layers, 2, cache, hd), np.float32),
            "pos": np.array([0], np.int32),
            "valid": np.array([n_first], np.int32),
        },
        {
            "cond": text,
            "kv": voice_kv,
            "pos": np.array([voice_len], np.int32),
            "valid": np.array([min(5, chunk)], np.int32),
        },
    ]
    pos_text = voice_len + min(5, chunk)
    after_text = write_rows(
        voice_kv,
        upstream.upstream_prefill(tts, text, voice_kv, np.array([voice_len]), np.array([min(5, chunk)]))["kv_new"],
        voice_len,
        min(5, chunk),
    )
    std = float(np.sqrt(tts.temp))
    step_examples = [
        {
            "latent": to_numpy(flow.bos_emb).reshape(1, -1),
            "noise": (rng.standard_normal((1, flow.ldim)) * std).astype(np.float32),
            "kv": after_text,
            "pos": np.array([pos_text], np.int32),
        },
        {
            "latent": rng.standard_normal((1, flow.ldim)).astype(np.float32),
            "noise": (rng.standard_normal((1, flow.ldim)) * std).astype(np.float32),
            "kv": after_text,
            "pos": np.array([pos_text], np.int32),
        },
    ]

    return {
        "prefill": Traceable(
            module=prefill,
            inputs=[
                TensorSpec("cond", (1, chunk, d)),
                kv_spec,
                TensorSpec("pos", (1,), "int32"),
                TensorSpec("valid", (1,), "int32"),
            ],
            outputs=["kv_new"],
            examples=prefill_examples,
            reference=lambda cond, kv, pos, valid: upstream.upstream_prefill(tts, cond, kv, pos, valid),
        ),
        "step": Traceable(
            module=step,
            inputs=[
                TensorSpec("latent", (1, flow.ldim)),
                TensorSpec("noise", (1, flow.ldim)),
                kv_spec,
                TensorSpec("pos", (1,), "int32"),
            ],
            outputs=["latent_out", "eos_logit", "kv_new"],
            examples=step_examples,
            reference=lambda latent, noise, kv, pos: upstream.upstream_step(tts, steps, latent, noise, kv, pos),
        ),
    }
