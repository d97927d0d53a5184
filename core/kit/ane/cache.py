"""A per-layer key/value cache in registered buffers (CoreML states, iOS18+), written by mask blend.

Principle: ``buf[..., pos, :] = new`` with a tensor position converts without error but drops the
write; a one-hot placement by matmul followed by in-place ``mul_``/``add_`` converts to a real
state update.
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """Keys and values of one layer, [B, kv_heads, capacity, head_dim], in buffers ``k`` and ``v``."""

    k: torch.Tensor  # buffers: declared so that attribute reads are typed as tensors, not modules
    v: torch.Tensor

    def __init__(self, kv_heads: int, capacity: int, head_dim: int, dtype: torch.dtype = torch.float32, batch: int = 1):
        super().__init__()
        self.capacity = capacity
        self.register_buffer("k", torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype))
        self.register_buffer("v", torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype))

    def write(self, k: torch.Tensor, v: torch.Tensor, placement: torch.Tensor) -> None:
        """Store k, v [B, kv_heads, L, D] at the slots ``placement`` [B, 1, capacity, L] (one-hot rows) selects."""
        written = placement.sum(dim=-1, keepdim=True).to(self.k.dtype)  # [B, 1, capacity, 1]: 1 where a row lands
        place = placement.to(self.k.dtype)
        self.k.mul_(1 - written)
        self.k.add_(torch.matmul(place, k.to(self.k.dtype)))
        self.v.mul_(1 - written)
        self.v.add_(torch.matmul(place, v.to(self.v.dtype)))


def placement(position: torch.Tensor, valid: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """[B, 1, capacity, length] one-hot: row ``position[b] + i`` of column ``i``, for the first ``valid[b]`` columns."""
    batch = position.shape[0]
    slots = torch.arange(capacity, dtype=torch.int32).view(1, 1, capacity, 1)
    steps = torch.arange(length, dtype=torch.int32).view(1, 1, 1, length)
    target = position.view(batch, 1, 1, 1).to(torch.int32) + steps
    keep = steps < valid.view(batch, 1, 1, 1).to(torch.int32)
    return ((slots == target) & keep).to(torch.float32)
