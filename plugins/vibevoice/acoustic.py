"""The streaming acoustic (σ-VAE) decoder: one speech latent -> 3200 samples per call, caches explicit.

The decoder is transformers' ``VibeVoiceAcousticTokenizerDecoderModel`` (the same layers
as upstream's tokenizer decoder; :func:`decoder_state_from_upstream` renames the
checkpoint's ``model.acoustic_tokenizer.decoder.*`` parameters onto it). Upstream decodes
each latent as it is sampled, keeping every causal convolution's left context in a
streaming cache. :class:`StreamingDecoder` does the same with that context as explicit
inputs and outputs, in the order :meth:`StreamingDecoder.cache_shapes` lists them:

* causal convolution: ``y = conv([cache, x])``, new cache = the last ``k - 1`` inputs;
* causal transposed convolution: ``y = convtr([cache, x])`` minus its right padding, of
  which the last ``stride * len(x)`` samples are new; new cache = the last ``k - 1`` inputs.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

SCALE_NAMES = ("speech_scaling_factor", "speech_bias_factor")


def decoder_config(
    hidden: int = 64,
    filters: int = 32,
    ratios: tuple[int, ...] = (8, 5, 5, 4, 2, 2),
    depths: tuple[int, ...] = (3, 3, 3, 3, 3, 3, 8),
) -> Any:
    """transformers' decoder config from upstream's facts (upstream lists the encoder's ratios and depths)."""
    from transformers import VibeVoiceAcousticTokenizerConfig

    config = VibeVoiceAcousticTokenizerConfig(
        hidden_size=hidden,
        num_filters=filters,
        downsampling_ratios=list(reversed(ratios)),
        depths=list(depths),
        rms_norm_eps=1e-5,
    )
    return config.decoder_config


def decoder_state_from_upstream(
    state: dict[str, Any], prefix: str = "model.acoustic_tokenizer.decoder."
) -> dict[str, Any]:
    """Checkpoint names -> transformers' decoder names (upstream's stage 0 is transformers' stem)."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        name = re.sub(r"^upsample_layers\.0\.0\.conv\.conv\.", "stem.conv.conv.", name)
        name = re.sub(r"^stages\.0\.", "stem.stage.", name)
        name = re.sub(
            r"^upsample_layers\.(\d+)\.0\.convtr\.convtr\.",
            lambda m: f"conv_layers.{int(m[1]) - 1}.convtr.convtr.",
            name,
        )
        name = re.sub(r"^stages\.(\d+)\.", lambda m: f"conv_layers.{int(m[1]) - 1}.stage.", name)
        name = re.sub(r"^head\.conv\.", "head.", name)
        name = name.replace("mixer.conv.conv.conv.", "mixer.conv.").replace(".conv.conv.conv.", ".conv.conv.")
        out[name] = value
    return out


class StreamingDecoder(nn.Module):
    """latent [1, hidden, 1] (already unscaled: latent / scaling - bias) + caches -> audio [1, 1, hop] + caches."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.convs = self._causal_modules()

    def _causal_modules(self) -> list[nn.Module]:
        d = self.decoder
        order: list[nn.Module] = [d.stem.conv, *(block.mixer for block in d.stem.stage)]
        for layer in d.conv_layers:
            order += [layer.convtr, *(block.mixer for block in layer.stage)]
        return [*order, d.head]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, m.in_channels, m.left_pad) for m in self.convs]

    def _conv(self, module: nn.Module, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([cache, x], dim=-1)
        new_cache = full[..., full.shape[-1] - module.left_pad :]
        if hasattr(module, "convtr"):
            y = module.convtr(full)
            if module.padding_total > 0:
                y = y[..., : y.shape[-1] - module.padding_total]
            return y[..., y.shape[-1] - x.shape[-1] * module.stride :], new_cache
        return module.conv(full), new_cache

    def _block(self, block: nn.Module, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ConvNeXt1d layer with its depthwise mixer streamed."""
        h = block.norm(x.transpose(1, 2)).transpose(1, 2)
        h, new_cache = self._conv(block.mixer, h, cache)
        x = x + h * block.gamma.unsqueeze(-1)
        h = block.ffn(block.ffn_norm(x.transpose(1, 2))).transpose(1, 2)
        return x + h * block.ffn_gamma.unsqueeze(-1), new_cache

    def forward(self, latent: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        d = self.decoder
        it = iter(caches)
        new: list[torch.Tensor] = []
        x, c = self._conv(d.stem.conv, latent, next(it))
        new.append(c)
        for block in d.stem.stage:
            x, c = self._block(block, x, next(it))
            new.append(c)
        for layer in d.conv_layers:
            x, c = self._conv(layer.convtr, x, next(it))
            new.append(c)
            for block in layer.stage:
                x, c = self._block(block, x, next(it))
                new.append(c)
        audio, c = self._conv(d.head, x, next(it))
        new.append(c)
        return (audio, *new)
