"""The "upstream" model: a toy text-to-speech network written the plain way."""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 256  # one token per UTF-8 byte
DIM = 16
SAMPLES_PER_FRAME = 240  # 10 ms at 24 kHz


class TinyTTS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.encoder = nn.Sequential(nn.Linear(DIM, 2 * DIM), nn.GELU(approximate="tanh"), nn.Linear(2 * DIM, DIM))
        self.norm = nn.LayerNorm(DIM)
        self.vocoder = nn.Linear(DIM, SAMPLES_PER_FRAME)

    def encode(self, emb: torch.Tensor) -> torch.Tensor:
        """[B, T, DIM] embeddings -> [B, T, DIM] hidden states."""
        return self.norm(emb + self.encoder(emb))

    def vocode(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, DIM] hidden state -> [B, SAMPLES_PER_FRAME] audio."""
        return 0.5 * torch.tanh(self.vocoder(hidden))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encode(self.embed(tokens))
        return self.vocode(hidden.reshape(-1, DIM)).reshape(-1)
