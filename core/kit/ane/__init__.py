"""Transformer layers laid out for the Apple Neural Engine, shared by plugins: one small module per layer.

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

from .attention import MASKED, GQAttention, causal_mask
from .cache import KVCache, placement
from .conv import Conv1x1
from .mlp import SwiGLU
from .norm import ChannelRMSNorm
from .rope import apply_rope, rope_rows, rope_tables

__all__ = [
    "MASKED",
    "ChannelRMSNorm",
    "Conv1x1",
    "GQAttention",
    "KVCache",
    "SwiGLU",
    "apply_rope",
    "causal_mask",
    "placement",
    "rope_rows",
    "rope_tables",
]
