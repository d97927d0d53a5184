"""VibeVoice's language models (Qwen2 decoder stacks) laid out for the Neural Engine.

:class:`AneQwen2` mirrors a transformers ``Qwen2Model``'s parameter names
(``layers.N.self_attn.q_proj.weight`` ...) so the upstream weights load into it
directly — ``Conv1x1`` reshapes the Linear weights as they load. It takes a chunk of
``L`` positions per call: input embeddings ``[B, C, 1, L]`` (the lm's are rows of the
token table, which the host looks up: the table ships as a constant), the chunk's first
position and how many of its rows are real (``valid``); rows past ``valid`` neither
write the KV cache nor advance anything, so the host can feed any number of tokens up
to ``L`` (the lm takes whole sentences at once, not the tts_lm's 5-token windows).
The KV cache of every layer lives in buffers that convert to CoreML states.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.kit.ane import ChannelRMSNorm, GQAttention, SwiGLU, causal_mask, placement, rope_rows, rope_tables
from ...core.kit.float64 import register_derived


class AneDecoderLayer(nn.Module):
    def __init__(self, cfg: dict, capacity: int, cache_dtype: torch.dtype, batch: int):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.input_layernorm = ChannelRMSNorm(hidden, cfg["rms_norm_eps"])
        self.self_attn = GQAttention(
            hidden,
            cfg["num_attention_heads"],
            cfg["num_key_value_heads"],
            cfg["head_dim"],
            capacity,
            True,
            cache_dtype,
            batch,
        )
        self.post_attention_layernorm = ChannelRMSNorm(hidden, cfg["rms_norm_eps"])
        self.mlp = SwiGLU(hidden, cfg["intermediate_size"])

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, place: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, place, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class AneQwen2(nn.Module):
    """A Qwen2 decoder stack over ``(1, C, 1, L)`` chunks with a stateful KV cache of ``capacity`` slots.

    ``final_norm``: the tts_lm keeps Qwen2's final RMSNorm; the lm's is an identity upstream.
    ``batch``: independent sequences with their own caches, positions and valid counts
    (the tts_lm's positive and negative classifier-free-guidance paths).
    """

    def __init__(
        self,
        cfg: dict,
        layers: int,
        chunk: int,
        capacity: int,
        final_norm: bool,
        cache_dtype: torch.dtype = torch.float32,
        batch: int = 1,
    ):
        super().__init__()
        self.chunk, self.capacity, self.hidden, self.batch = chunk, capacity, cfg["hidden_size"], batch
        self.layers = nn.ModuleList(AneDecoderLayer(cfg, capacity, cache_dtype, batch) for _ in range(layers))
        self.norm = ChannelRMSNorm(self.hidden, cfg["rms_norm_eps"]) if final_norm else None
        # rebuilt in float64 for the float64 parity check
        register_derived(
            self, "rope_cos", lambda dtype: rope_tables(cfg["head_dim"], capacity, cfg["rope_theta"], dtype)[0]
        )
        register_derived(
            self, "rope_sin", lambda dtype: rope_tables(cfg["head_dim"], capacity, cfg["rope_theta"], dtype)[1]
        )

    def state_names(self) -> list[str]:
        return [name for name, _ in self.named_buffers() if name.endswith((".cache.k", ".cache.v"))]

    def forward(self, inputs: torch.Tensor, position: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """inputs: embeddings [B, C, 1, L]; position, valid [B] -> hidden [B, C, 1, L]."""
        length, capacity, x = self.chunk, self.capacity, inputs
        cos, sin = rope_rows(self.rope_cos, self.rope_sin, position, length)
        place = placement(position, valid, length, capacity)
        mask = causal_mask(position, length, capacity)
        for layer in self.layers:
            x = layer(x, cos, sin, place, mask)
        return self.norm(x) if self.norm is not None else x

    def reset(self) -> None:
        for name in self.state_names():
            self.get_buffer(name).zero_()


def from_qwen2(
    qwen: Any,
    cfg: dict,
    chunk: int,
    capacity: int,
    final_norm: bool,
    cache_dtype: torch.dtype = torch.float32,
    batch: int = 1,
) -> AneQwen2:
    """An AneQwen2 carrying a transformers Qwen2Model's weights (strict: every weight must land).

    The weights are upstream's own tensors, not copies (a ``[out, in]`` Linear weight becomes its
    ``[out, in, 1, 1]`` view): the full-size lm and tts_lm would otherwise hold a second 1.9 GB of
    float32 through the whole export. The token table (``embed_tokens``) stays out: the lm takes
    its rows. Built on the meta device, so no initial weights are made
    either; the buffers (KV caches, RoPE tables) are then made as the constructor would."""
    with torch.device("meta"):
        model = AneQwen2(cfg, len(qwen.layers), chunk, capacity, final_norm, cache_dtype, batch)
    state = {
        k: v
        for k, v in qwen.state_dict().items()
        if not k.startswith("embed_tokens.") and (final_norm or not k.startswith("norm."))
    }
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    caches = set(model.state_names())
    missing = [k for k in missing if k not in caches]
    if missing or unexpected:
        raise ValueError(f"weights do not map onto the ANE layout: missing {missing}, unexpected {unexpected}")
    for module_name, sub in model.named_modules():
        builders = sub.__dict__.get("_zoo_derived", {})
        for name, buffer in list(sub._buffers.items()):
            if buffer is None or not buffer.is_meta:
                continue
            if name in builders:
                sub._buffers[name] = builders[name](torch.float32)
            elif f"{module_name}.{name}".lstrip(".") in caches:  # a KV cache starts empty (KVCache's zeros)
                sub._buffers[name] = torch.zeros(buffer.shape, dtype=buffer.dtype)
            else:
                raise ValueError(f"from_qwen2 cannot make buffer {module_name}.{name}: neither a cache nor derived")
    return model.eval()
