"""The gated feed-forward block (SwiGLU) with 1x1 convolutions."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .conv import Conv1x1


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with 1x1 convolutions."""

    def __init__(self, hidden: int, intermediate: int, bias: bool = False):
        super().__init__()
        self.gate_proj = Conv1x1(hidden, intermediate, bias=bias)
        self.up_proj = Conv1x1(hidden, intermediate, bias=bias)
        self.down_proj = Conv1x1(intermediate, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
