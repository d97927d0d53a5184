"""The port: an encoder laid out for the Neural Engine and a per-frame vocoder."""

from __future__ import annotations

import torch
from torch import nn

from .reference import DIM, TinyTTS


class Conv1x1Encoder(nn.Module):
    """The encoder in (B, C, 1, T) layout with 1x1 convolutions instead of Linear."""

    def __init__(self, upstream: TinyTTS):
        super().__init__()
        lin1, _, lin2 = upstream.encoder
        self.fc1 = nn.Conv2d(DIM, 2 * DIM, 1)
        self.fc2 = nn.Conv2d(2 * DIM, DIM, 1)
        with torch.no_grad():
            self.fc1.weight.copy_(lin1.weight[:, :, None, None])
            self.fc1.bias.copy_(lin1.bias)
            self.fc2.weight.copy_(lin2.weight[:, :, None, None])
            self.fc2.bias.copy_(lin2.bias)
        self.norm = upstream.norm

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.transpose(1, 2).unsqueeze(2)  # [B, DIM, 1, T]
        x = x + self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh"))
        return self.norm(x.squeeze(2).transpose(1, 2))


class Vocoder(nn.Module):
    def __init__(self, upstream: TinyTTS):
        super().__init__()
        self.upstream = upstream

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.upstream.vocode(hidden)
