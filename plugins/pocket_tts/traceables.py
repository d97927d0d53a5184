"""build_traceables: the PocketTTS components as fixed-shape torch modules.

* ``flowlm`` — one package, two functions sharing the transformer weights:
  - ``prefill``: a chunk of conditioning tokens [1, C, d] written into the KV
    cache at ``pos``; only the first ``valid`` tokens are written, so padding
    never creates cache entries nor advances the position.
  - ``step``: one generation step — the transformer on the previous latent,
    the EOS logit and every LSD decode step of the flow head, fused, with the
    noise as an input.
  Both run the same :class:`CachedTransformer`, so prefill and step cannot
  diverge, and write the cache with a mask blend (``cache * (1 - m) + new``):
  index writes on a cache tensor are what coremltools can drop silently.
* ``mimi`` — the streaming Mimi decoder for one latent frame (1920 samples),
  every piece of streaming state (convolution history, transposed-convolution
  partial sums, the decoder transformer's keys/values over its context: 250 steps,
  50 in the small family's decoder) passed in and returned explicitly.
* ``voice_encoder`` — voice cloning: a prompt of up to ``voice_seconds`` of audio
  (zero-padded at the end) -> the voice conditioning, one row per 80 ms. Mimi's
  encoder is causal, so padding at the end leaves the rows of the real audio
  exact. Its RoPE angles (up to ~2000 rad, beyond fp16) are precomputed in fp32.

The modules reuse the upstream layers (weights and the ops they run: LayerNorm,
tanh-GELU, RoPE formula, SDPA, the flow head); only the cache handling is new.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...core.kit.float64 import register_derived
from .options import PocketOptions


def rope_tables(
    positions: int, dim: int, max_period: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [positions, dim/2], computed exactly as pocket_tts.modules.rope does per call."""
    ds = torch.arange(dim // 2, dtype=dtype)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / dim))
    ts = torch.arange(positions, dtype=dtype).view(-1, 1)
    return torch.cos(freqs * ts), torch.sin(freqs * ts)


def register_rope(module: nn.Module, positions: int, dim: int, max_period: float) -> None:
    """``rope_cos`` / ``rope_sin`` buffers (rebuilt in float64 for the float64 parity check)."""
    register_derived(module, "rope_cos", lambda dtype: rope_tables(positions, dim, max_period, dtype)[0])
    register_derived(module, "rope_sin", lambda dtype: rope_tables(positions, dim, max_period, dtype)[1])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by per-position tables cos/sin [T, D/2] (upstream's pairing of even/odd)."""
    b, t, h, d = x.shape
    x = x.view(b, t, h, d // 2, 2)
    xr, xi = x[..., 0], x[..., 1]
    cos = cos.view(1, t, 1, d // 2)
    sin = sin.view(1, t, 1, d // 2)
    out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
    return out.view(b, t, h, d)


def rope_qkv(
    layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An upstream transformer layer's norm1 and in_proj on x [1, t, E]: q [1, t, h, d], and k (both
    with RoPE) and v [1, t, h_kv, d] — h_kv < h with grouped-query attention, else h."""
    attn = layer.self_attn
    t, h, d = x.shape[1], attn.num_heads, attn.dim_per_head
    projected = attn.in_proj(layer.norm1(x))
    q = projected[..., : attn.attn_dim].view(1, t, h, d)
    k, v = torch.unbind(projected[..., attn.attn_dim :].view(1, t, 2, attn.num_kv_heads, d), dim=2)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def share_kv_heads(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Keys or values [1, h_kv, L, d] -> [1, h_kv * groups, L, d], each head repeated for its ``groups``
    query heads in turn (upstream's ``repeat_interleave`` on the head axis), by broadcasting a new
    axis: an expand and a reshape convert to a tile, with no index arithmetic in the graph."""
    if groups == 1:
        return x
    b, h, length, d = x.shape
    return x.unsqueeze(2).expand(b, h, groups, length, d).reshape(b, h * groups, length, d)


def attend_and_feed_forward(
    layer: nn.Module, x: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The rest of the layer: SDPA (q/keys/values [1, h, *, d]), out_proj, layer scale, residual, feed-forward."""
    t = q.shape[2]
    out = F.scaled_dot_product_attention(q, keys, values, mask, dropout_p=0.0)
    out = layer.self_attn.out_proj(out.transpose(1, 2).reshape(1, t, -1))
    return layer._ff_block(x + layer.layer_scale_1(out))


class CachedTransformer(nn.Module):
    """The FlowLM transformer for C new tokens at ``pos`` over a fixed-size KV cache.

    Cache layout: ``kv`` [layers, 2, S, kv_heads * head_dim], keys stored after RoPE
    (grouped-query attention caches its key/value heads only, as upstream);
    slots below ``pos`` hold the tokens so far. The cache is only read: the new
    tokens' keys/values come back as rows [layers, 2, C, kv_heads * head_dim] for the
    caller to store at ``pos`` — only the first ``valid`` rows are real, the rest
    are zeros, so padding can neither write a cache entry nor advance the position.
    """

    def __init__(self, transformer: nn.Module, cache_size: int):
        super().__init__()
        self.layers = transformer.layers
        attn = self.layers[0].self_attn
        self.heads = attn.num_heads
        self.kv_heads = attn.num_kv_heads
        self.head_dim = attn.dim_per_head
        #: the width of a cache row: key/value heads x head_dim
        self.kv_width = self.kv_heads * self.head_dim
        if attn.context is not None:
            raise NotImplementedError("windowed FlowLM attention is not supported")
        self.cache_size = cache_size
        register_rope(self, cache_size, self.head_dim, transformer.max_period)
        self.register_buffer("slots", torch.arange(cache_size, dtype=torch.float32), persistent=False)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            return self._eager(x, kv, int(pos.reshape(-1)[0]), valid)
        chunk = x.shape[1]  # a Python int at trace time
        s = self.cache_size
        offsets = torch.arange(chunk, dtype=torch.int32)
        positions = pos.to(torch.int32) + offsets  # [C]
        cos = torch.index_select(self.rope_cos, 0, positions)
        sin = torch.index_select(self.rope_sin, 0, positions)
        # keys are the S cache slots then the C new tokens: query c sees the slots below pos
        # and the new tokens up to itself (causal)
        steps = offsets.to(torch.float32)
        cache_visible = (self.slots.view(1, s) < pos.to(torch.float32)).expand(chunk, s)
        mask = torch.cat([cache_visible, steps.view(1, chunk) <= steps.view(chunk, 1)], dim=1)  # [C, S + C]
        keep = (steps < valid.to(torch.float32)).to(x.dtype).view(1, chunk, 1)
        return self._layers(x, kv, chunk, s, cos, sin, mask.view(1, 1, chunk, s + chunk), keep)

    def _eager(
        self, x: torch.Tensor, kv: torch.Tensor, pos: int, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same computation run eagerly (the torch backend): attend to the ``pos`` filled slots only.

        The traced graph must read every slot with a mask (CoreML needs static shapes); eagerly,
        a position is a Python int, so each layer reads the filled prefix as a strided view
        and concatenates only those rows with the new ones, as upstream's cache does, instead
        of all S slots: at pos 150 of 512 a step moves 0.3x the bytes. Parity of the exported
        graph against this path is what the mil level checks.
        """
        chunk = x.shape[1]
        if not 0 <= pos <= self.cache_size - chunk:
            raise ValueError(f"cache position {pos} outside 0..{self.cache_size - chunk}")
        cos, sin = self.rope_cos[pos : pos + chunk], self.rope_sin[pos : pos + chunk]
        steps = torch.arange(chunk)
        causal = steps.view(1, chunk) <= steps.view(chunk, 1)
        mask = (
            None
            if chunk == 1
            else torch.cat([torch.ones(chunk, pos, dtype=torch.bool), causal], dim=1).view(1, 1, chunk, pos + chunk)
        )
        keep = (steps < valid.reshape(-1)[0]).to(x.dtype).view(1, chunk, 1)
        return self._layers(x, kv, chunk, pos, cos, sin, mask, keep)

    def _layers(
        self,
        x: torch.Tensor,
        kv: torch.Tensor,
        chunk: int,
        slots: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        keep: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer on the C new tokens x [1, C, E], each attending to the first ``slots`` rows of
        its cache (all S in the traced graph, under ``mask``; the ``pos`` filled ones eagerly) and
        to the new tokens: (x, the new rows [2, layers, C, HD], zeroed where ``keep`` is 0)."""
        h, d = self.kv_heads, self.head_dim
        groups = self.heads // h
        rows = []
        for i, layer in enumerate(self.layers):
            q, k, v = rope_qkv(layer, x, cos, sin)
            past = kv[i] if slots == self.cache_size else kv[i, :, :slots]  # the graph reads the whole cache
            keys = torch.cat([past[0].view(1, slots, h, d), k], dim=1).transpose(1, 2)
            values = torch.cat([past[1].view(1, slots, h, d), v], dim=1).transpose(1, 2)
            keys, values = share_kv_heads(keys, groups), share_kv_heads(values, groups)
            x = attend_and_feed_forward(layer, x, q.transpose(1, 2), keys, values, mask)
            rows.append(torch.stack([k.reshape(1, chunk, h * d), v.reshape(1, chunk, h * d)], dim=0) * keep)
        return x, torch.cat(rows, dim=1)


def _rows(stacked: torch.Tensor, layers: int) -> torch.Tensor:
    """[2, layers, C, HD] -> [layers, 2, C, HD]."""
    return stacked.transpose(0, 1)


class Prefill(nn.Module):
    """flowlm.prefill: keys/values of ``valid`` conditioning tokens at ``pos`` (zeros for the padding)."""

    def __init__(self, flow_lm: nn.Module, cache_size: int):
        super().__init__()
        self.transformer = CachedTransformer(flow_lm.transformer, cache_size)

    def forward(self, cond: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        _, rows = self.transformer(cond, kv, pos, valid)
        return _rows(rows, len(self.transformer.layers))


class Step(nn.Module):
    """flowlm.step: transformer on the previous latent, EOS logit and the fused flow decode.

    The sampler head is upstream's: ``lsd`` (``decode_steps`` Euler steps with two time
    conditions), ``drifting`` (one call on the noise: the sample is the head's output) or
    ``pointwise`` (the noise plus the head's output). With ``z_dim`` set (the small family)
    a bias-free projection of the normed hidden state feeds both the EOS and sampler heads.
    """

    def __init__(
        self, flow_lm: nn.Module, cache_size: int, decode_steps: int, transformer: CachedTransformer | None = None
    ):
        super().__init__()
        self.transformer = transformer or CachedTransformer(flow_lm.transformer, cache_size)
        self.input_linear = flow_lm.input_linear
        self.out_norm = flow_lm.out_norm
        self.out_eos = flow_lm.out_eos
        self.flow_net = flow_lm.flow_net
        self.z_proj = flow_lm.z_proj  # None outside the small family
        if flow_lm.flow_type not in ("lsd", "drifting", "pointwise"):
            raise NotImplementedError(
                f"the {flow_lm.flow_type!r} sampler head is not ported (lsd, drifting and pointwise are)"
            )
        self.flow_type = flow_lm.flow_type
        self.decode_steps = decode_steps

    def forward(
        self, latent: torch.Tensor, noise: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.input_linear(latent.view(1, 1, -1))
        one = torch.ones(1, dtype=torch.int32)
        hidden, rows = self.transformer(x, kv, pos, one)
        hidden = self.out_norm(hidden)[:, -1]  # [1, d]
        if self.z_proj is not None:
            hidden = self.z_proj(hidden)  # [1, z_dim]
        hidden = hidden.to(torch.float32)
        eos = self.out_eos(hidden)
        if self.flow_type == "drifting":  # upstream's drifting_decode: the sample is the head's output
            return self.flow_net(hidden, noise), eos, _rows(rows, len(self.transformer.layers))
        if self.flow_type == "pointwise":  # upstream's pointwise_decode: LSD's single 0 -> 1 step, no time
            return noise + self.flow_net(hidden, noise), eos, _rows(rows, len(self.transformer.layers))
        current = noise
        n = self.decode_steps
        for i in range(n):  # s = i/N, t = (i+1)/N
            s = torch.full_like(noise[..., :1], i / n)
            t = torch.full_like(noise[..., :1], (i + 1) / n)
            current = current + self.flow_net(hidden, s, t, current) / n
        return current, eos, _rows(rows, len(self.transformer.layers))


# ------------------------------------------------------------------------------ Mimi
def mimi_state_layout(mimi: nn.Module, frames_per_call: int = 1) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every streaming state of the Mimi decoder path."""
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d

    layout: dict[str, tuple[int, ...]] = {}
    up = mimi.upsample.convtr.convtr
    layout["upsample"] = (1, up.out_channels, up.kernel_size[0] - up.stride[0])
    layers = mimi.decoder_transformer.transformer.layers
    attn = layers[0].self_attn
    for i in range(len(layers)):  # keys/values of the attention's context (upstream's config: 250 or 50 steps)
        layout[f"attn{i}_k"] = (1, attn.num_heads, attn.context, attn.dim_per_head)
        layout[f"attn{i}_v"] = (1, attn.num_heads, attn.context, attn.dim_per_head)
    for name, module in mimi.decoder.named_modules():
        if isinstance(module, StreamingConv1d):
            if module.pad_mode != "constant":
                raise NotImplementedError(f"streaming pad mode {module.pad_mode!r}")
            keep = module._effective_kernel_size - module._stride
            if keep:
                layout["conv_" + name.replace(".", "_")] = (1, module.conv.in_channels, keep)
        elif isinstance(module, StreamingConvTranspose1d):
            layout["convtr_" + name.replace(".", "_")] = (
                1,
                module.convtr.out_channels,
                module._kernel_size - module._stride,
            )
    return layout


class MimiDecoder(nn.Module):
    """``frames`` latent frames (after the quantizer projection) -> 1920 samples each, state in and out.

    Inputs: ``quantized`` [1, C, frames], ``pos`` int32 [1] (the decoder
    transformer's absolute step), then every state of :func:`mimi_state_layout`.
    Outputs: ``audio`` [1, 1, 1920 * frames] then the updated states in the same
    order. The decoder is causal, so a frame's audio does not depend on the frames
    decoded after it in the same call.
    """

    def __init__(self, mimi: nn.Module, max_positions: int, frames: int = 1):
        super().__init__()
        from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d

        self.upsample = mimi.upsample.convtr.convtr
        self.layers = mimi.decoder_transformer.transformer.layers
        proj = mimi.decoder_transformer
        if proj.input_proj is not None or any(not isinstance(p, nn.Identity) for p in proj.output_projs):
            raise NotImplementedError("projected Mimi transformers are not supported")
        attn = self.layers[0].self_attn
        if attn.context is None or attn.num_kv_heads != attn.num_heads:
            raise NotImplementedError(
                "the Mimi decoder transformer is expected to have a context and no grouped-query heads"
            )
        #: decoder transformer steps each key/value state keeps (upstream's ``context``)
        self.window = attn.context
        self.heads, self.head_dim = attn.num_heads, attn.dim_per_head
        self.steps_per_frame = self.upsample.stride[0]  # transformer steps per latent
        self.frames = frames
        self.steps = self.steps_per_frame * frames
        self.decoder = mimi.decoder.model
        self.kinds = [
            "conv"
            if isinstance(m, StreamingConv1d)
            else "convtr"
            if isinstance(m, StreamingConvTranspose1d)
            else "resblock"
            if hasattr(m, "block")
            else "plain"
            for m in self.decoder
        ]
        self.layout = mimi_state_layout(mimi)
        self.state_names = list(self.layout)
        register_rope(self, max_positions, self.head_dim, mimi.decoder_transformer.transformer.max_period)
        keys = self.window + self.steps
        self.register_buffer("key_index", torch.arange(keys, dtype=torch.float32), persistent=False)
        self.register_buffer("query_index", torch.arange(self.steps, dtype=torch.float32), persistent=False)

    @staticmethod
    def _conv(
        conv: nn.Conv1d, x: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if previous is None:
            return conv(x), None
        x = torch.cat([previous, x], dim=-1)
        return conv(x), x[..., -previous.shape[-1] :]

    @staticmethod
    def _convtr(
        convtr: nn.ConvTranspose1d, x: torch.Tensor, partial: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = convtr(x)
        keep = partial.shape[-1]
        length = y.shape[-1] - keep
        out = torch.cat([y[..., :keep] + partial, y[..., keep:length]], dim=-1)
        tail = y[..., length:]
        if convtr.bias is not None:
            tail = tail - convtr.bias[:, None]
        return out, tail

    def _transformer(
        self, x: torch.Tensor, pos: torch.Tensor, states: dict[str, torch.Tensor], new: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        t = self.steps
        positions = pos.to(torch.int32) + torch.arange(t, dtype=torch.int32)
        cos = torch.index_select(self.rope_cos, 0, positions)
        sin = torch.index_select(self.rope_sin, 0, positions)
        # key j holds absolute position pos - W + j: the window's W past steps, then the t new ones
        first_valid = self.window - pos.to(torch.float32)
        kj = self.key_index.view(1, -1)
        qi = self.query_index.view(-1, 1)
        mask = (kj >= first_valid) & (kj > qi) & (kj <= qi + self.window)
        for i, layer in enumerate(self.layers):
            q, k, v = rope_qkv(layer, x, cos, sin)
            keys = torch.cat([states[f"attn{i}_k"], k.transpose(1, 2)], dim=2)
            values = torch.cat([states[f"attn{i}_v"], v.transpose(1, 2)], dim=2)
            new[f"attn{i}_k"] = keys[:, :, t:]
            new[f"attn{i}_v"] = values[:, :, t:]
            x = attend_and_feed_forward(layer, x, q.transpose(1, 2), keys, values, mask.view(1, 1, t, -1))
        return x

    def forward(
        self, quantized: torch.Tensor, pos: torch.Tensor, *state_values: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        states = dict(zip(self.state_names, state_values))
        new: dict[str, torch.Tensor] = {}
        x, new["upsample"] = self._convtr(self.upsample, quantized, states["upsample"])
        x = self._transformer(x.transpose(1, 2), pos, states, new).transpose(1, 2)
        for index, (module, kind) in enumerate(zip(self.decoder, self.kinds)):
            if kind == "conv":
                x, prev = self._conv(module.conv, x, states.get("conv_model_" + str(index)))
                if prev is not None:
                    new["conv_model_" + str(index)] = prev
            elif kind == "convtr":
                x, new["convtr_model_" + str(index)] = self._convtr(
                    module.convtr, x, states["convtr_model_" + str(index)]
                )
            elif kind == "resblock":
                v = x
                for j, sub in enumerate(module.block):
                    if hasattr(sub, "conv"):
                        name = f"conv_model_{index}_block_{j}"
                        v, prev = self._conv(sub.conv, v, states.get(name))
                        if prev is not None:
                            new[name] = prev
                    else:
                        v = sub(v)
                x = x + v
            else:
                x = module(x)
        return (x, *(new[name] for name in self.state_names))


class StatefulMimiDecoder(MimiDecoder):
    """The Mimi decoder with its streaming state held as CoreML states (iOS18), in fp16.

    Inputs ``quantized`` and ``pos``; output ``audio``. Each state is read at the
    start of a call and written back whole with a full-slice assignment, the write
    pattern coremltools converts into ``coreml_update_state``. States start at zero,
    which is the decoder's initial state.
    """

    def __init__(self, mimi: nn.Module, max_positions: int, frames: int = 1):
        super().__init__(mimi, max_positions, frames)
        for name, shape in self.layout.items():
            self.register_buffer("s_" + name, torch.zeros(shape, dtype=torch.float16))

    def forward(self, quantized: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        buffers = [getattr(self, "s_" + n) for n in self.state_names]
        outs = super().forward(quantized, pos, *(b.to(torch.float32) for b in buffers))
        for buf, new in zip(buffers, outs[1:]):
            buf[(slice(None),) * buf.dim()] = new.to(torch.float16)
        return outs[0]


class VoiceEncoder(nn.Module):
    """audio [1, 1, N] -> voice conditioning [1, N / 1920, d]: Mimi's encoder and the speaker projection.

    The same layers and ops as upstream's ``TTSModel._encode_audio``, with the
    shape arithmetic done in Python at build time (traced shape ops are what
    fails to convert) and the RoPE angles precomputed for the fixed length.
    """

    def __init__(self, tts: nn.Module, samples: int):
        super().__init__()
        from pocket_tts.modules.conv import StreamingConv1d

        mimi = tts.mimi
        self.encoder = mimi.encoder.model
        self.kinds = [
            "conv" if isinstance(m, StreamingConv1d) else "resblock" if hasattr(m, "block") else "plain"
            for m in self.encoder
        ]
        for m in mimi.encoder.modules():
            if isinstance(m, StreamingConv1d) and m.pad_mode != "constant":
                raise NotImplementedError(f"encoder pad mode {m.pad_mode!r}")
        self.layers = mimi.encoder_transformer.transformer.layers
        proj = mimi.encoder_transformer
        if proj.input_proj is not None or any(not isinstance(p, nn.Identity) for p in proj.output_projs):
            raise NotImplementedError("projected Mimi transformers are not supported")
        self.downsample = mimi.downsample.conv
        if self.downsample.pad_mode != "replicate":
            raise NotImplementedError("the Mimi downsampling is expected to pad by replication")
        self.speaker_proj = tts.flow_lm.speaker_proj_weight
        if samples % mimi.frame_size:
            raise ValueError(f"voice prompt length {samples} is not a multiple of the {mimi.frame_size}-sample frame")
        steps = samples // mimi.encoder.hop_length
        attn = self.layers[0].self_attn
        self.heads, self.head_dim, self.context = attn.num_heads, attn.dim_per_head, attn.context
        register_rope(self, steps, self.head_dim, mimi.encoder_transformer.transformer.max_period)
        pos = torch.arange(steps)
        delta = pos.view(-1, 1) - pos.view(1, -1)
        mask = delta >= 0
        if self.context is not None:
            mask = mask & (delta < self.context)
        self.register_buffer("mask", mask.view(1, 1, steps, steps), persistent=False)

    @staticmethod
    def _conv(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        keep = module._effective_kernel_size - module._stride
        return module.conv(F.pad(x, (keep, 0)) if keep else x)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio
        for module, kind in zip(self.encoder, self.kinds):
            if kind == "conv":
                x = self._conv(module, x)
            elif kind == "resblock":
                v = x
                for sub in module.block:
                    v = self._conv(sub, v) if hasattr(sub, "conv") else sub(v)
                x = x + v
            else:
                x = module(x)
        x = x.transpose(1, 2)  # [1, T, C]
        for layer in self.layers:
            q, k, v = rope_qkv(layer, x, self.rope_cos, self.rope_sin)
            x = attend_and_feed_forward(layer, x, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.mask)
        x = x.transpose(1, 2)
        keep = self.downsample._effective_kernel_size - self.downsample._stride
        x = self.downsample.conv(torch.cat([x[..., :1].expand(-1, -1, keep), x], dim=-1))
        return F.linear(x.transpose(1, 2).to(torch.float32), self.speaker_proj)


def initial_mimi_state(layout: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import numpy as np

    return {name: np.zeros(shape, dtype=np.float32) for name, shape in layout.items()}


# ------------------------------------------------------------------------- assembling
def _np(t: Any) -> Any:
    import numpy as np

    return np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float32)


def write_rows(kv: Any, rows: Any, pos: int, count: int) -> Any:
    """The cache after storing the first ``count`` new rows [layers, 2, C, HD] at ``pos`` (a copy)."""
    import numpy as np

    out = np.array(kv, dtype=np.float32, copy=True)
    out[:, :, pos : pos + count] = np.asarray(rows)[:, :, :count]
    return out


def voice_cache(state: dict[str, Any], cache_size: int) -> tuple[Any, int]:
    """An upstream voice model_state -> (kv [layers, 2, S, H*D] zero-padded, voice length)."""
    import numpy as np

    layers = sorted(state, key=lambda n: int(n.split(".")[2]))
    length = int(state[layers[0]]["offset"].view(-1)[0])
    first = state[layers[0]]["cache"]
    kv = np.zeros((len(layers), 2, cache_size, first.shape[-2] * first.shape[-1]), dtype=np.float32)
    if length > cache_size:
        raise ValueError(f"voice prompt of {length} tokens does not fit a cache of {cache_size}")
    for i, name in enumerate(layers):
        kv[i, :, :length] = _np(state[name]["cache"][:, 0, :length]).reshape(2, length, -1)
    return kv, length


def build(ref: Any, options: PocketOptions, precision: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from ...core import StateSpec, TensorSpec, Traceable
    from . import reference as upstream

    tts = ref.tts
    flow = tts.flow_lm
    cache, chunk, steps = options.cache_size, options.chunk, options.decode_steps
    state_dtype = "float16" if precision == "fp16" else "float32"
    rng = np.random.default_rng(20261121)
    d = flow.dim
    layers = len(flow.transformer.layers)
    prefill = Prefill(flow, cache).eval()
    hd = prefill.transformer.kv_width
    step = Step(flow, cache, steps, transformer=prefill.transformer).eval()

    # parity inputs: the voice prompt from an empty cache, then a padded text chunk after the voice
    voice_name = next(iter(ref.voices))
    voice_kv, voice_len = voice_cache(ref.voices[voice_name], cache)
    prompt = ref.voice_prompts.get(voice_name)
    first = np.zeros((1, chunk, d), dtype=np.float32)
    n_first = min(chunk, voice_len)
    if prompt is not None:
        first[:, :n_first] = _np(prompt[:, :n_first])
    else:
        first[:, :n_first] = rng.standard_normal((1, n_first, d))
    text = (rng.standard_normal((1, chunk, d)) * 0.5).astype(np.float32)  # padding rows hold garbage: it must not leak
    kv_spec = TensorSpec("kv", (layers, 2, cache, hd), state_dtype)
    prefill_examples = [
        {
            "cond": first,
            "kv": np.zeros((layers, 2, cache, hd), np.float32),
            "pos": np.array([0], np.int32),
            "valid": np.array([n_first], np.int32),
        },
        {
            "cond": text,
            "kv": voice_kv,
            "pos": np.array([voice_len], np.int32),
            "valid": np.array([min(5, chunk)], np.int32),
        },
    ]
    pos_text = voice_len + min(5, chunk)
    after_text = write_rows(
        voice_kv,
        upstream.upstream_prefill(tts, text, voice_kv, np.array([voice_len]), np.array([min(5, chunk)]))["kv_new"],
        voice_len,
        min(5, chunk),
    )
    std = float(np.sqrt(tts.temp))
    step_examples = [
        {
            "latent": _np(flow.bos_emb).reshape(1, -1),
            "noise": (rng.standard_normal((1, flow.ldim)) * std).astype(np.float32),
            "kv": after_text,
            "pos": np.array([pos_text], np.int32),
        },
        {
            "latent": rng.standard_normal((1, flow.ldim)).astype(np.float32),
            "noise": (rng.standard_normal((1, flow.ldim)) * std).astype(np.float32),
            "kv": after_text,
            "pos": np.array([pos_text], np.int32),
        },
    ]

    frames = options.mimi_frames
    mimi = MimiDecoder(tts.mimi, options.mimi_max_positions, frames).eval()
    names = mimi.state_names
    quant_w = _np(tts.mimi.quantizer.output_proj.weight)[:, :, 0]  # [C, latent]

    def quantize(latent: Any) -> Any:
        denorm = latent * _np(flow.emb_std) + _np(flow.emb_mean)
        return (quant_w @ denorm.reshape(-1, 1)).reshape(1, -1, 1).astype(np.float32)

    def quantize_frames() -> Any:
        return np.concatenate(
            [quantize(rng.standard_normal(flow.ldim).astype(np.float32)) for _ in range(frames)], axis=2
        )

    state = initial_mimi_state(mimi.layout)
    mimi_examples = [{"quantized": quantize_frames(), "pos": np.array([0], np.int32), **state}]
    with torch.no_grad():
        pos = 0
        for _ in range(-(-(mimi.window // mimi.steps_per_frame + 2) // frames)):  # run past the window
            inputs = [torch.from_numpy(quantize_frames()), torch.tensor([pos], dtype=torch.int32)]
            outs = mimi(*inputs, *(torch.from_numpy(state[n]) for n in names))
            state = {n: _np(v) for n, v in zip(names, outs[1:])}
            pos += mimi.steps
    mimi_examples.append({"quantized": quantize_frames(), "pos": np.array([pos], np.int32), **state})

    def mimi_reference(quantized: Any, pos: Any, **states: Any) -> dict[str, Any]:
        return upstream.upstream_mimi(tts, names, quantized, pos, states)

    if options.stateful_mimi:
        if precision != "fp16":
            raise ValueError("the stateful Mimi decoder exists in fp16 only (CoreML states are fp16)")
        stateful = StatefulMimiDecoder(tts.mimi, options.mimi_max_positions, frames).eval()
        zeros = initial_mimi_state(mimi.layout)
        mimi_traceable = Traceable(
            module=stateful,
            inputs=[TensorSpec("quantized", (1, quant_w.shape[0], frames)), TensorSpec("pos", (1,), "int32")],
            outputs=["audio"],
            examples=[{k: mimi_examples[0][k] for k in ("quantized", "pos")}],
            reference=lambda quantized, pos: {
                "audio": upstream.upstream_mimi(tts, names, quantized, pos, zeros)["audio"]
            },
            states=[StateSpec("s_" + n, mimi.layout[n], "float16") for n in names],
        )
    else:
        mimi_traceable = Traceable(
            module=mimi,
            inputs=[TensorSpec("quantized", (1, quant_w.shape[0], frames)), TensorSpec("pos", (1,), "int32")]
            + [TensorSpec(n, mimi.layout[n], state_dtype) for n in names],
            outputs=["audio"] + ["new_" + n for n in names],
            examples=mimi_examples,
            reference=mimi_reference,
        )

    samples = int(options.voice_seconds * tts.config.mimi.sample_rate)
    prompt_audio = np.zeros((1, 1, samples), np.float32)
    real = upstream.random_voice_audio(7, seconds=options.voice_seconds * 0.6)[0]
    prompt_audio[0, 0, : len(real)] = real

    def encoder_reference(audio: Any) -> dict[str, Any]:
        with torch.no_grad():
            return {"conditioning": tts._encode_audio(torch.as_tensor(audio)).numpy()}

    return {
        "flowlm": {
            "prefill": Traceable(
                module=prefill,
                inputs=[
                    TensorSpec("cond", (1, chunk, d)),
                    kv_spec,
                    TensorSpec("pos", (1,), "int32"),
                    TensorSpec("valid", (1,), "int32"),
                ],
                outputs=["kv_new"],
                examples=prefill_examples,
                reference=lambda cond, kv, pos, valid: upstream.upstream_prefill(tts, cond, kv, pos, valid),
            ),
            "step": Traceable(
                module=step,
                inputs=[
                    TensorSpec("latent", (1, flow.ldim)),
                    TensorSpec("noise", (1, flow.ldim)),
                    kv_spec,
                    TensorSpec("pos", (1,), "int32"),
                ],
                outputs=["latent_out", "eos_logit", "kv_new"],
                examples=step_examples,
                reference=lambda latent, noise, kv, pos: upstream.upstream_step(tts, steps, latent, noise, kv, pos),
            ),
        },
        "voice_encoder": Traceable(
            module=VoiceEncoder(tts, samples).eval(),
            inputs=[TensorSpec("audio", (1, 1, samples))],
            outputs=["conditioning"],
            examples=[{"audio": prompt_audio}],
            reference=encoder_reference,
        ),
        "mimi": mimi_traceable,
    }
