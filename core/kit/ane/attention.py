"""Grouped-query self-attention over a :class:`KVCache`, with a causal mask relative to the chunk.

Shapes: activations ``(B, C, 1, L)``; heads ``[B, H, L, D]``; mask ``[B, 1, L, capacity]``.
Principle: the mask is additive and finite (``MASKED``) so fp16 never meets ``-inf``; the channel
axis is reshaped only to split heads; grouped query heads are stacked along the query axis
(``[B, kv_heads, group * L, D]``) so the cache is read where it lies, never repeated per head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .cache import KVCache
from .conv import Conv1x1
from .rope import apply_rope

#: added to masked attention scores: exp() of it is exactly 0 in fp32, and it is finite in fp16
MASKED = -30000.0


def causal_mask(position: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """[B, 1, length, capacity] additive mask: query i of sequence b sees cache slots 0 .. position[b] + i."""
    batch = position.shape[0]
    slots = torch.arange(capacity, dtype=torch.int32).view(1, 1, 1, capacity)
    last = position.view(batch, 1, 1, 1).to(torch.int32) + torch.arange(length, dtype=torch.int32).view(1, 1, length, 1)
    return torch.where(slots <= last, torch.zeros((), dtype=torch.float32), torch.full((), MASKED, dtype=torch.float32))


class GQAttention(nn.Module):
    """Grouped-query self-attention on ``(B, C, 1, L)`` with a :class:`KVCache` (Qwen2/Llama layout)."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        qkv_bias: bool = True,
        cache_dtype: torch.dtype = torch.float32,
        batch: int = 1,
    ):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.batch = heads, kv_heads, head_dim, batch
        self.q_proj = Conv1x1(hidden, heads * head_dim, bias=qkv_bias)
        self.k_proj = Conv1x1(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = Conv1x1(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = Conv1x1(heads * head_dim, hidden, bias=False)
        self.cache = KVCache(kv_heads, capacity, head_dim, cache_dtype, batch)
        self.scale = 1.0 / math.sqrt(head_dim)

    def _heads(self, x: torch.Tensor, count: int, length: int) -> torch.Tensor:
        return x.view(self.batch, count, self.head_dim, length).transpose(2, 3)  # [B, H, L, D]

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, place: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        length = mask.shape[2]
        q = apply_rope(self._heads(self.q_proj(x), self.heads, length), cos, sin)
        k = apply_rope(self._heads(self.k_proj(x), self.kv_heads, length), cos, sin)
        v = self._heads(self.v_proj(x), self.kv_heads, length)
        self.cache.write(k, v, place)
        # the query heads that share a key/value head are stacked along the query axis
        # ([B, kv, group * L, D]) instead of repeating the cache for every head: each head
        # reads the cache where it lies (a repeat would copy it group times, per layer and call)
        group = self.heads // self.kv_heads
        stacked = q.reshape(self.batch, self.kv_heads, group * length, self.head_dim)
        keys, values = self.cache.k.to(q.dtype), self.cache.v.to(q.dtype)  # [B, kv, capacity, D]
        scores = torch.matmul(stacked, keys.transpose(2, 3)) * self.scale  # [B, kv, group * L, capacity]
        capacity = self.cache.capacity
        scores = scores.view(self.batch, self.kv_heads, group, length, capacity) + mask.unsqueeze(2)
        weights = torch.softmax(scores, dim=-1).view(self.batch, self.kv_heads, group * length, capacity)
        out = torch.matmul(weights, values).view(self.batch, self.heads, length, self.head_dim)  # [B, H, L, D]
        return self.o_proj(out.transpose(2, 3).reshape(self.batch, self.heads * self.head_dim, 1, length))
