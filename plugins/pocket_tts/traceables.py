"""build_traceables: the PocketTTS components as fixed-shape torch modules, one module each.

* ``flowlm`` (:mod:`.flowlm`) — ``prefill`` and ``step`` over one KV cache.
* ``mimi`` (:mod:`.mimi`) — the streaming Mimi decoder, state in and out (or in CoreML states).
* ``voice_encoder`` (:mod:`.voice`) — voice cloning from a prompt of audio.

The modules reuse the upstream layers (weights and the ops they run: LayerNorm,
tanh-GELU, RoPE formula, SDPA, the flow head); only the cache handling is new.
"""

from __future__ import annotations

from typing import Any

from ...core import Traceable
from .flowlm import build_flowlm
from .mimi import build_mimi
from .options import PocketOptions
from .voice import build_voice_encoder


def build(ref: Any, options: PocketOptions, precision: str) -> dict[str, Any]:
    """Every component's traceables. One seeded generator feeds the parity examples, flowlm's first and
    mimi's after, so the examples (and the packages' recorded parity) do not depend on the split."""
    import numpy as np

    rng = np.random.default_rng(20261121)
    flowlm: dict[str, Traceable] = build_flowlm(ref, options, precision, rng)
    mimi = build_mimi(ref, options, precision, rng)
    return {"flowlm": flowlm, "voice_encoder": build_voice_encoder(ref, options), "mimi": mimi}
