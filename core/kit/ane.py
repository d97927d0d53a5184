"""Transformer layers laid out for the Apple Neural Engine, shared by plugins.

After apple/ml-ane-transformers: activations are ``(B, C, 1, L)`` (channels first,
sequence last), every linear layer is a 1x1 ``Conv2d`` — the weights of an upstream
``nn.Linear`` load into it unchanged through a state-dict hook — and nothing
reshapes the channel axis except attention's split into heads.

* :class:`Conv1x1` — ``nn.Linear`` as a 1x1 convolution (loads ``[out, in]`` weights).
* :class:`ChannelRMSNorm` — RMSNorm over the channel axis computed as a LayerNorm of
  ``[x, -x]``: that concatenation has mean exactly zero and variance ``mean(x²)``, so
  LayerNorm yields RMSNorm, and CoreML's layer_norm never materialises ``x²`` (which
  overflows fp16 for activations above 256).
* :func:`rope_tables` / :func:`apply_rope` — rotary embeddings precomputed for every
  position and gathered by position (no trigonometry at run time).
* :class:`KVCache` — a per-layer key/value cache held in registered buffers that
  convert to CoreML states (iOS18+). New rows are written with a mask blend (one-hot
  placement by matmul, then ``mul_``/``add_`` in place): ``buf[..., pos, :] = new``
  with a tensor position converts without error but drops the write.
* :class:`GQAttention` — grouped-query attention over a cache, with a causal mask
  relative to the chunk's position, for chunks of up to ``L`` tokens of which the
  first ``valid`` are real (rows past ``valid`` never write the cache). A batch of
  ``B`` independent sequences (e.g. the positive and negative paths of classifier-free
  guidance) each has its own cache rows, position and valid count.

Everything is plain torch and traces with ``torch.jit.trace``; shapes are Python
ints fixed at construction.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

#: added to masked attention scores: exp() of it is exactly 0 in fp32, and it is finite in fp16
MASKED = -30000.0


class Conv1x1(nn.Conv2d):
    """``nn.Linear(in_features, out_features)`` on ``(B, C, 1, L)`` activations."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, kernel_size=1, bias=bias)
        self._register_load_state_dict_pre_hook(self._linear_weights)

    @staticmethod
    def _linear_weights(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "weight"
        if key in state_dict and state_dict[key].dim() == 2:
            state_dict[key] = state_dict[key][:, :, None, None]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Conv1x1":
        conv = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        conv.load_state_dict(linear.state_dict())
        return conv


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channel axis of ``(B, C, 1, L)``, as LayerNorm of ``[x, -x]``."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        doubled = torch.cat([x, -x], dim=1).permute(0, 2, 3, 1)  # (B, 1, L, 2C)
        normed = F.layer_norm(doubled, (2 * self.channels,), eps=self.eps).permute(0, 3, 1, 2)
        return normed[:, : self.channels] * self.weight.view(1, -1, 1, 1)


def rope_tables(
    head_dim: int, positions: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [positions, head_dim] as transformers' default rotary embedding computes them: its
    ``inv_freq`` is a float32 buffer of the model (so float32 here too), the angles are in ``dtype``."""
    inv_freq = (1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))).to(
        dtype
    )
    angles = torch.arange(positions, dtype=torch.int64).to(dtype)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, D] rotated by cos/sin [B, 1, L, D] (rotate-half convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class KVCache(nn.Module):
    """Keys and values of one layer, [B, kv_heads, capacity, head_dim], in buffers ``k`` and ``v``."""

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


def causal_mask(position: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """[B, 1, length, capacity] additive mask: query i of sequence b sees cache slots 0 .. position[b] + i."""
    batch = position.shape[0]
    slots = torch.arange(capacity, dtype=torch.int32).view(1, 1, 1, capacity)
    last = position.view(batch, 1, 1, 1).to(torch.int32) + torch.arange(length, dtype=torch.int32).view(1, 1, length, 1)
    return torch.where(slots <= last, torch.zeros((), dtype=torch.float32), torch.full((), MASKED, dtype=torch.float32))


def rope_rows(
    cos: torch.Tensor, sin: torch.Tensor, position: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables' rows for positions ``position[b] + i``: [B, 1, length, D] each (rows past the
    table repeat its last)."""
    batch, capacity = position.shape[0], cos.shape[0]
    rows = position.view(batch, 1).to(torch.int32) + torch.arange(length, dtype=torch.int32).view(1, length)
    last = torch.full((batch, length), capacity - 1, dtype=torch.int32)
    rows = torch.where(rows > last, last, rows).view(-1)  # (torch.clamp on ints converts to an fp32 op)
    pick = (torch.index_select(cos, 0, rows), torch.index_select(sin, 0, rows))
    return pick[0].view(batch, 1, length, -1), pick[1].view(batch, 1, length, -1)


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
        group = self.heads // self.kv_heads
        keys = self.cache.k.to(q.dtype).repeat_interleave(group, dim=1)  # [B, H, capacity, D]
        values = self.cache.v.to(q.dtype).repeat_interleave(group, dim=1)
        scores = torch.matmul(q, keys.transpose(2, 3)) * self.scale + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), values)  # [B, H, L, D]
        return self.o_proj(out.transpose(2, 3).reshape(self.batch, self.heads * self.head_dim, 1, length))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with 1x1 convolutions."""

    def __init__(self, hidden: int, intermediate: int, bias: bool = False):
        super().__init__()
        self.gate_proj = Conv1x1(hidden, intermediate, bias=bias)
        self.up_proj = Conv1x1(hidden, intermediate, bias=bias)
        self.down_proj = Conv1x1(intermediate, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
