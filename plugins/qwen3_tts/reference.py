"""load_reference: the upstream model, from local weights or seeded random weights.

Replace ``Upstream`` with the upstream package's model class (imported here, inside
the hook's call, never at plugin import). Load weights without unpickling:
safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zoo.core import Reference, WeightsSource

from .options import Options

VOCAB = 256  # one token per UTF-8 byte
WEIGHTS_FILE = "model.safetensors"


class Upstream(nn.Module):
    """The placeholder upstream model: token -> embedding -> residual MLP -> samples."""

    def __init__(self, options: Options):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, options.dim)
        self.mlp = nn.Sequential(nn.Linear(options.dim, 2 * options.dim), nn.GELU(approximate="tanh"), nn.Linear(2 * options.dim, options.dim))
        self.out = nn.Linear(options.dim, options.samples_per_token)

    def synthesize(self, emb: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] embeddings -> [B, T * samples_per_token] audio."""
        hidden = emb + self.mlp(emb)
        return 0.5 * torch.tanh(self.out(hidden)).flatten(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[T] token ids -> [T * samples_per_token] audio."""
        return self.synthesize(self.embed(tokens)[None])[0]


def load(weights: WeightsSource, options: Options) -> Reference:
    model = Upstream(options).eval()
    files: dict[str, str] = {}
    if weights.kind == "random":
        gen = torch.Generator().manual_seed(weights.seed or 0)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    elif weights.kind == "local":
        from safetensors.torch import load_file

        from zoo.core.kit.files import file_sha256

        path = Path(weights.path)
        file = path / WEIGHTS_FILE if path.is_dir() else path
        model.load_state_dict(load_file(str(file)), strict=True)
        files[file.name] = file_sha256(file)
    else:
        raise ValueError("qwen3_speaker has no hub repository yet: pass --weights PATH or --random-weights")
    return Reference(model, files=files)
