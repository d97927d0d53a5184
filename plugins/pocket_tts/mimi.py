"""The ``mimi`` component: the streaming Mimi decoder for a few latent frames (1920 samples each).

Every piece of streaming state (convolution history, transposed-convolution partial sums, the decoder
transformer's keys/values over its context: 250 steps, 50 in the small family's decoder) is passed in
and returned explicitly — or, with ``stateful_mimi``, held in CoreML states (fp16 only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core import StateSpec, TensorSpec, Traceable
from .layers import attend_and_feed_forward, register_rope, rope_qkv, to_numpy
from .options import PocketOptions


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


def initial_mimi_state(layout: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import numpy as np

    return {name: np.zeros(shape, dtype=np.float32) for name, shape in layout.items()}


def build_mimi(ref: Any, options: PocketOptions, precision: str, rng: Any) -> Traceable:
    """The decoder with two parity examples: from the zero state, and after running past its window."""
    import numpy as np

    from . import reference as upstream

    tts = ref.tts
    flow = tts.flow_lm
    state_dtype = "float16" if precision == "fp16" else "float32"
    frames = options.mimi_frames
    mimi = MimiDecoder(tts.mimi, options.mimi_max_positions, frames).eval()
    names = mimi.state_names
    quant_w = to_numpy(tts.mimi.quantizer.output_proj.weight)[:, :, 0]  # [C, latent]

    def quantize(latent: Any) -> Any:
        denorm = latent * to_numpy(flow.emb_std) + to_numpy(flow.emb_mean)
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
            state = {n: to_numpy(v) for n, v in zip(names, outs[1:])}
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
    return mimi_traceable
