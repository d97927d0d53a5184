"""Rotary position embeddings: tables precomputed for every position, rows gathered by position.

Principle: no trigonometry at run time and no shape arithmetic on traced tensors; positions beyond
the table repeat its last row (a gather, since ``torch.clamp`` on ints converts to an fp32 op).
"""

from __future__ import annotations

import torch


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
