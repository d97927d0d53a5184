"""The ``voice_encoder`` component: voice cloning from a prompt of up to ``voice_seconds`` of audio.

The audio is zero-padded at the end and becomes the voice conditioning, one row per 80 ms. Mimi's
encoder is causal, so padding at the end leaves the rows of the real audio exact. Its RoPE angles
(up to ~2000 rad, beyond fp16) are precomputed in fp32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...core import TensorSpec, Traceable
from .layers import attend_and_feed_forward, register_rope, rope_qkv
from .options import PocketOptions


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
        # the attention mask [steps, steps] (causal, within ``context``) is computed from the step
        # numbers in the graph: stored, it was 4 MB of bools in the package (and 4.4 s to write);
        # build_voice_encoder keeps coremltools from folding it back into a constant
        self.steps = steps
        self.register_buffer("step_numbers", torch.arange(steps, dtype=torch.int32), persistent=False)

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
        delta = self.step_numbers.view(-1, 1) - self.step_numbers.view(1, -1)  # query step - key step
        mask = delta >= 0
        if self.context is not None:
            mask = mask & (delta < self.context)
        mask = mask.view(1, 1, self.steps, self.steps)
        for layer in self.layers:
            q, k, v = rope_qkv(layer, x, self.rope_cos, self.rope_sin)
            x = attend_and_feed_forward(layer, x, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        x = x.transpose(1, 2)
        keep = self.downsample._effective_kernel_size - self.downsample._stride
        x = self.downsample.conv(torch.cat([x[..., :1].expand(-1, -1, keep), x], dim=-1))
        return F.linear(x.transpose(1, 2).to(torch.float32), self.speaker_proj)


def build_voice_encoder(ref: Any, options: PocketOptions) -> Traceable:
    """The encoder with one parity example: random speech-like audio filling 60% of the prompt."""
    import numpy as np

    from . import reference as upstream

    tts = ref.tts
    samples = int(options.voice_seconds * tts.config.mimi.sample_rate)
    prompt_audio = np.zeros((1, 1, samples), np.float32)
    real = upstream.random_voice_audio(7, seconds=options.voice_seconds * 0.6)[0]
    prompt_audio[0, 0, : len(real)] = real

    def encoder_reference(audio: Any) -> dict[str, Any]:
        with torch.no_grad():
            return {"conditioning": tts._encode_audio(torch.as_tensor(audio)).numpy()}

    module = VoiceEncoder(tts, samples).eval()
    steps = module.steps
    return Traceable(
        module=module,
        inputs=[TensorSpec("audio", (1, 1, samples))],
        outputs=["conditioning"],
        examples=[{"audio": prompt_audio}],
        reference=encoder_reference,
        # the [steps, steps] mask and the differences it is made of stay computed (nothing else in
        # the encoder folds into a constant that large: its largest weight is 1024 x 512)
        convert_options={"pass_options": {"common::const_elimination": {"skip_const_by_size": steps * steps - 1}}},
    )
