"""RMSNorm over the channel axis of ``(B, C, 1, L)``, computed as a LayerNorm of ``[x, -x]``.

Principle: ``[x, -x]`` has mean exactly zero and variance ``mean(x²)``, so LayerNorm yields RMSNorm
while CoreML's layer_norm never materialises ``x²`` (which overflows fp16 above 256).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
