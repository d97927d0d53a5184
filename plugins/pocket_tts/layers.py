"""Layers the PocketTTS components share: RoPE with upstream's even/odd pairing (not the kit's
rotate-half ``zoo.core.kit.ane.rope_tables``), attention helpers over upstream's layers, and the
FlowLM transformer over a fixed-size KV cache."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...core.kit.float64 import register_derived


def paired_rope_tables(
    dim: int, positions: int, max_period: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [positions, dim/2], computed exactly as pocket_tts.modules.rope does per call."""
    ds = torch.arange(dim // 2, dtype=dtype)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / dim))
    ts = torch.arange(positions, dtype=dtype).view(-1, 1)
    return torch.cos(freqs * ts), torch.sin(freqs * ts)


def register_rope(module: nn.Module, positions: int, dim: int, max_period: float) -> None:
    """``rope_cos`` / ``rope_sin`` buffers (rebuilt in float64 for the float64 parity check)."""
    register_derived(module, "rope_cos", lambda dtype: paired_rope_tables(dim, positions, max_period, dtype)[0])
    register_derived(module, "rope_sin", lambda dtype: paired_rope_tables(dim, positions, max_period, dtype)[1])


def apply_paired_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by per-position tables cos/sin [T, D/2] (upstream's pairing of even/odd)."""
    b, t, h, d = x.shape
    x = x.view(b, t, h, d // 2, 2)
    xr, xi = x[..., 0], x[..., 1]
    cos = cos.view(1, t, 1, d // 2)
    sin = sin.view(1, t, 1, d // 2)
    out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
    return out.view(b, t, h, d)


def rope_qkv(
    layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An upstream transformer layer's norm1 and in_proj on x [1, t, E]: q [1, t, h, d], and k (both
    with RoPE) and v [1, t, h_kv, d] — h_kv < h with grouped-query attention, else h."""
    attn = layer.self_attn
    t, h, d = x.shape[1], attn.num_heads, attn.dim_per_head
    projected = attn.in_proj(layer.norm1(x))
    q = projected[..., : attn.attn_dim].view(1, t, h, d)
    k, v = torch.unbind(projected[..., attn.attn_dim :].view(1, t, 2, attn.num_kv_heads, d), dim=2)
    return apply_paired_rope(q, cos, sin), apply_paired_rope(k, cos, sin), v


def share_kv_heads(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Keys or values [1, h_kv, L, d] -> [1, h_kv * groups, L, d], each head repeated for its ``groups``
    query heads in turn (upstream's ``repeat_interleave`` on the head axis), by broadcasting a new
    axis: an expand and a reshape convert to a tile, with no index arithmetic in the graph."""
    if groups == 1:
        return x
    b, h, length, d = x.shape
    return x.unsqueeze(2).expand(b, h, groups, length, d).reshape(b, h * groups, length, d)


def attend_and_feed_forward(
    layer: nn.Module, x: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The rest of the layer: SDPA (q/keys/values [1, h, *, d]), out_proj, layer scale, residual, feed-forward."""
    t = q.shape[2]
    out = F.scaled_dot_product_attention(q, keys, values, mask, dropout_p=0.0)
    out = layer.self_attn.out_proj(out.transpose(1, 2).reshape(1, t, -1))
    return layer._ff_block(x + layer.layer_scale_1(out))


class CachedTransformer(nn.Module):
    """The FlowLM transformer for C new tokens at ``pos`` over a fixed-size KV cache.

    Cache layout: ``kv`` [layers, 2, S, kv_heads * head_dim], keys stored after RoPE
    (grouped-query attention caches its key/value heads only, as upstream);
    slots below ``pos`` hold the tokens so far. The cache is only read: the new
    tokens' keys/values come back as rows [layers, 2, C, kv_heads * head_dim] for the
    caller to store at ``pos`` — only the first ``valid`` rows are real, the rest
    are zeros, so padding can neither write a cache entry nor advance the position.
    """

    def __init__(self, transformer: nn.Module, cache_size: int):
        super().__init__()
        self.layers = transformer.layers
        attn = self.layers[0].self_attn
        self.heads = attn.num_heads
        self.kv_heads = attn.num_kv_heads
        self.head_dim = attn.dim_per_head
        #: the width of a cache row: key/value heads x head_dim
        self.kv_width = self.kv_heads * self.head_dim
        if attn.context is not None:
            raise NotImplementedError("windowed FlowLM attention is not supported")
        self.cache_size = cache_size
        register_rope(self, cache_size, self.head_dim, transformer.max_period)
        self.register_buffer("slots", torch.arange(cache_size, dtype=torch.float32), persistent=False)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            return self._eager(x, kv, int(pos.reshape(-1)[0]), valid)
        chunk = x.shape[1]  # a Python int at trace time
        s = self.cache_size
        offsets = torch.arange(chunk, dtype=torch.int32)
        positions = pos.to(torch.int32) + offsets  # [C]
        cos = torch.index_select(self.rope_cos, 0, positions)
        sin = torch.index_select(self.rope_sin, 0, positions)
        # keys are the S cache slots then the C new tokens: query c sees the slots below pos
        # and the new tokens up to itself (causal)
        steps = offsets.to(torch.float32)
        cache_visible = (self.slots.view(1, s) < pos.to(torch.float32)).expand(chunk, s)
        mask = torch.cat([cache_visible, steps.view(1, chunk) <= steps.view(chunk, 1)], dim=1)  # [C, S + C]
        keep = (steps < valid.to(torch.float32)).to(x.dtype).view(1, chunk, 1)
        return self._layers(x, kv, chunk, s, cos, sin, mask.view(1, 1, chunk, s + chunk), keep)

    def _eager(
        self, x: torch.Tensor, kv: torch.Tensor, pos: int, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same computation run eagerly (the torch backend): attend to the ``pos`` filled slots only.

        The traced graph must read every slot with a mask (CoreML needs static shapes); eagerly,
        a position is a Python int, so each layer reads the filled prefix as a strided view
        and concatenates only those rows with the new ones, as upstream's cache does, instead
        of all S slots: at pos 150 of 512 a step moves 0.3x the bytes. Parity of the exported
        graph against this path is what the mil level checks.
        """
        chunk = x.shape[1]
        if not 0 <= pos <= self.cache_size - chunk:
            raise ValueError(f"cache position {pos} outside 0..{self.cache_size - chunk}")
        cos, sin = self.rope_cos[pos : pos + chunk], self.rope_sin[pos : pos + chunk]
        steps = torch.arange(chunk)
        causal = steps.view(1, chunk) <= steps.view(chunk, 1)
        mask = (
            None
            if chunk == 1
            else torch.cat([torch.ones(chunk, pos, dtype=torch.bool), causal], dim=1).view(1, 1, chunk, pos + chunk)
        )
        keep = (steps < valid.reshape(-1)[0]).to(x.dtype).view(1, chunk, 1)
        return self._layers(x, kv, chunk, pos, cos, sin, mask, keep)

    def _layers(
        self,
        x: torch.Tensor,
        kv: torch.Tensor,
        chunk: int,
        slots: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        keep: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer on the C new tokens x [1, C, E], each attending to the first ``slots`` rows of
        its cache (all S in the traced graph, under ``mask``; the ``pos`` filled ones eagerly) and
        to the new tokens: (x, the new rows [2, layers, C, HD], zeroed where ``keep`` is 0)."""
        h, d = self.kv_heads, self.head_dim
        groups = self.heads // h
        rows = []
        for i, layer in enumerate(self.layers):
            q, k, v = rope_qkv(layer, x, cos, sin)
            past = kv[i] if slots == self.cache_size else kv[i, :, :slots]  # the graph reads the whole cache
            keys = torch.cat([past[0].view(1, slots, h, d), k], dim=1).transpose(1, 2)
            values = torch.cat([past[1].view(1, slots, h, d), v], dim=1).transpose(1, 2)
            keys, values = share_kv_heads(keys, groups), share_kv_heads(values, groups)
            x = attend_and_feed_forward(layer, x, q.transpose(1, 2), keys, values, mask)
            rows.append(torch.stack([k.reshape(1, chunk, h * d), v.reshape(1, chunk, h * d)], dim=0) * keep)
        return x, torch.cat(rows, dim=1)


def _rows(stacked: torch.Tensor, layers: int) -> torch.Tensor:
    """[2, layers, C, HD] -> [layers, 2, C, HD]."""
    return stacked.transpose(0, 1)


def to_numpy(t: Any) -> Any:
    """A tensor (or array) as a contiguous float32 numpy array."""
    import numpy as np

    return np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float32)
