"""build_traceables: the torch modules that are converted, with example inputs and the upstream
function each is compared with (float64 exactness, then the calibrated fp32 bound)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.core import TensorSpec, Traceable

from .options import Options


class Synth(nn.Module):
    """The port of ``Upstream.synthesize`` at a fixed chunk: embeddings [1, chunk, dim] -> audio
    [1, chunk * samples_per_token]. Keep upstream's exact ops (a different GELU is a port bug)."""

    def __init__(self, upstream: Any):
        super().__init__()
        self.upstream = upstream

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.upstream.synthesize(emb)


def build(upstream: Any, options: Options, precision: str) -> dict[str, Traceable]:
    rng = np.random.default_rng(0)
    examples = [{"emb": rng.standard_normal((1, options.chunk, options.dim)).astype(np.float32)} for _ in range(2)]

    def reference(emb: Any) -> dict[str, Any]:
        with torch.no_grad():  # float32 here, float64 in the float64 check: dtypes follow the input
            return {"audio": upstream.synthesize(torch.from_numpy(emb)).numpy()}

    return {
        "synth": Traceable(
            module=Synth(upstream).eval(),
            inputs=[TensorSpec("emb", (1, options.chunk, options.dim))],
            outputs=["audio"],
            examples=examples,
            reference=reference,
        )
    }
