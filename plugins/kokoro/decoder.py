"""The Kokoro decoder as a traceable module over a flexible frame axis (work in progress).

F0/N prediction, the decoder blocks and the iSTFTNet generator, reusing the
upstream layers, with what does not convert replaced by equivalent ops:

* the harmonic source (SineGen) takes its additive noise as an input, uses
  ``x - floor(x)`` for ``x % 1`` (``remainder`` converts to zeros in coremltools
  9.0), and replays PyTorch's linear interpolation with precomputed indices and
  weights (a float scale factor on a flexible axis does not convert);
* STFT / iSTFT are convolutions that reproduce ``torch.stft`` / ``torch.istft``
  (Hann window, centred, reflect padding, window-envelope normalisation);
* ``torch.rsqrt(torch.tensor(2))`` (an int op) becomes a float constant.

The harmonic phase reaches ~1e4-1e5 rad, where one fp32 ulp is ~1e-3-1e-2 rad,
and the generator feeds the STFT phase of near-silent bins onward: a last-bit
difference in the source becomes a large audio difference. So the source replays
PyTorch's interpolation bit for bit, including its fused multiply-add (emulated
with error-free fp32 transformations, which convert and execute like any op).

Measured (small config, 40 frames): this module vs KModel with the same noise,
relative audio error 6.2e-4 away from the first 5 frames (where an atan2 sign
flip in the first STFT frame settles). Converted with a flexible frame axis and
run by the MIL interpreter, it differs from the torch module by ~10%, even with
the division kept as traced (``remove_passes``) and a double-accumulating cumsum:
the decoder is chaotic — a 1e-7 relative change of the harmonic source moves the
audio by ~8e-4, 1e-5 by ~20% (the generator reads the STFT *phase* of near-silent
bins) — so the last-bit differences of any other implementation of conv, norm,
sin or atan2 (the interpreter's numpy, CoreML's kernels) show up in the samples.
A sample-wise threshold can only hold between bit-identical computations; the
packaged decoder needs a spectral metric (e.g. multi-resolution STFT magnitude)
at the ``mil``/``coreml`` levels, with sample-wise checks kept for the torch side.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SQRT_HALF = float(torch.rsqrt(torch.tensor(2.0)))  # the value upstream multiplies by


class ConvSTFT(nn.Module):
    """torch.stft / torch.istft (periodic Hann, center=True, reflect pad, onesided) as convolutions."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n = np.arange(n_fft)
        k = np.arange(n_fft // 2 + 1)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
        angle = 2 * np.pi * np.outer(k, n) / n_fft
        cos, sin = np.cos(angle), np.sin(angle)
        sin[(k == 0) | (k == n_fft // 2)] = 0.0  # exactly zero: DC and Nyquist bins are real
        self.register_buffer("fwd_re", torch.tensor(cos * window, dtype=torch.float32)[:, None])
        self.register_buffer("fwd_im", torch.tensor(-sin * window + 0.0, dtype=torch.float32)[:, None])
        scale = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0)[:, None] / n_fft
        self.register_buffer("inv_re", torch.tensor(scale * cos * window, dtype=torch.float32)[:, None])
        self.register_buffer("inv_im", torch.tensor(-scale * sin * window + 0.0, dtype=torch.float32)[:, None])
        self.register_buffer("window_sq", torch.tensor(window**2, dtype=torch.float32).view(1, 1, -1))

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [1, T] -> magnitude, phase [1, n_fft/2 + 1, frames]."""
        pad = self.n_fft // 2
        x = F.pad(x[:, None], (pad, pad), mode="reflect")
        re = F.conv1d(x, self.fwd_re, stride=self.hop)
        im = F.conv1d(x, self.fwd_im, stride=self.hop)
        # torch.angle gives pi for a negative real with a zero imaginary part, whatever the zero's sign
        phase = torch.where((im == 0) & (re < 0), torch.full_like(im, math.pi), torch.atan2(im, re))
        return torch.sqrt(re * re + im * im), phase

    def inverse(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """magnitude, phase [1, bins, frames] -> [1, 1, hop * (frames - 1)]."""
        y = F.conv_transpose1d(magnitude * torch.cos(phase), self.inv_re, stride=self.hop)
        y = y + F.conv_transpose1d(magnitude * torch.sin(phase), self.inv_im, stride=self.hop)
        envelope = F.conv_transpose1d(torch.ones_like(magnitude[:, :1]), self.window_sq, stride=self.hop)
        pad = self.n_fft // 2
        return (y / envelope)[..., pad:-pad]


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Veltkamp split of fp32 values into 12-bit halves (x = hi + lo exactly)."""
    t = x * 4097.0
    hi = t - (t - x)
    return hi, x - hi


def fused_multiply_add(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c rounded once, from fp32 operations only (Dekker's product, Knuth's sum).

    PyTorch's CPU linear interpolation computes ``fma(x0, w0, x1 * w1)``; replaying
    it with separately rounded fp32 ops differs in the last bit, which the harmonic
    source's ~1e4-rad phases turn into audible differences.
    """
    product = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    product_err = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    total = product + c
    back = total - product
    sum_err = (product - (total - back)) + (c - back)
    return total + (sum_err + product_err)


class HarmonicSource(nn.Module):
    """SourceModuleHnNSF + SineGen of kokoro.istftnet, deterministic: the additive noise is an input.

    f0 [1, M] at the decoder's frame rate (M = 2F) -> harmonic source [1, 300 * M].
    SineGen's random initial phase only touches the first sample, which its linear
    downsampling never reads, so it has no effect and is left out.
    """

    def __init__(self, source: nn.Module, factor: int):
        super().__init__()
        gen = source.l_sin_gen
        self.sine_amp, self.noise_std, self.threshold = gen.sine_amp, gen.noise_std, gen.voiced_threshold
        self.rate, self.factor = gen.sampling_rate, factor
        self.register_buffer("harmonics", torch.arange(1, gen.harmonic_num + 2, dtype=torch.float32).view(1, 1, -1))
        self.scale = float(np.float32(1.0 / factor))  # PyTorch's source-index step for this factor
        self.linear = source.l_linear

    def forward(self, f0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # per-frame phase increments (what upstream's sample-rate computation reduces to)
        rad = f0.unsqueeze(-1) * self.harmonics / self.rate  # [1, M, H]
        rad = rad - torch.floor(rad)
        phase = (torch.cumsum(rad, dim=1) * 2 * math.pi).transpose(1, 2) * self.factor  # [1, H, M]
        # PyTorch's linear upsampling, replayed exactly: source index, weight, fused blend
        f0_up = f0.unsqueeze(-1).repeat(1, 1, self.factor).reshape(1, -1, 1)  # nearest upsampling
        j = torch.cumsum(torch.ones_like(f0_up[0, :, 0]), dim=0) - 0.5  # j + 0.5 for j = 0..S-1
        src = torch.clamp(fused_multiply_add(j, torch.full_like(j, self.scale), torch.full_like(j, -0.5)), min=0.0)
        i0 = torch.floor(src)
        w1 = torch.clamp(src - i0, 0.0, 1.0)
        padded = torch.cat([phase, phase[..., -1:]], dim=-1)  # the last frame blends with itself
        index = i0.to(torch.int32)
        p0 = torch.index_select(padded, 2, index)
        p1 = torch.index_select(padded, 2, index + 1)
        phase = fused_multiply_add(p0, 1 - w1, p1 * w1)
        sines = torch.sin(phase.transpose(1, 2)) * self.sine_amp  # [1, S, H]
        uv = (f0_up > self.threshold).to(torch.float32)
        amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        waves = sines * uv + amp * noise
        return torch.tanh(self.linear(waves)).transpose(1, 2).squeeze(1)  # [1, S]


def adain_block(block: nn.Module, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """AdainResBlk1d.forward with its 1/sqrt(2) as a float constant."""
    return (block._residual(x, s) + block._shortcut(x)) * SQRT_HALF


class Decoder(nn.Module):
    """en [1, C, F], asr [1, 512, F], style [1, 2 * style_dim], noise [1, 600 F, 9] -> audio [1, 600 F]."""

    def __init__(self, kmodel: Any):
        super().__init__()
        self.predictor = kmodel.predictor
        self.decoder = kmodel.decoder
        gen = kmodel.decoder.generator
        self.generator = gen
        self.style_dim = kmodel.predictor.text_encoder.sty_dim
        hop = gen.stft.hop_length
        factor = int(gen.f0_upsamp.scale_factor)
        self.source = HarmonicSource(gen.m_source, factor)
        self.stft = ConvSTFT(gen.post_n_fft, hop)

    def forward(self, en: torch.Tensor, asr: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        s_pred, s_dec = style[:, self.style_dim :], style[:, : self.style_dim]
        # F0 / N prediction (ProsodyPredictor.F0Ntrain)
        p = self.predictor
        x, _ = p.shared(en.transpose(-1, -2))
        f0 = x.transpose(-1, -2)
        for block in p.F0:
            f0 = adain_block(block, f0, s_pred)
        f0 = p.F0_proj(f0).squeeze(1)
        n = x.transpose(-1, -2)
        for block in p.N:
            n = adain_block(block, n, s_pred)
        n = p.N_proj(n).squeeze(1)
        # decoder blocks (istftnet.Decoder.forward)
        d = self.decoder
        f0_down = d.F0_conv(f0.unsqueeze(1))
        n_down = d.N_conv(n.unsqueeze(1))
        x = adain_block(d.encode, torch.cat([asr, f0_down, n_down], dim=1), s_dec)
        asr_res = d.asr_res(asr)
        residual = True
        for block in d.decode:
            if residual:
                x = torch.cat([x, asr_res, f0_down, n_down], dim=1)
            x = adain_block(block, x, s_dec)
            if block.upsample_type != "none":
                residual = False
        # generator (istftnet.Generator.forward) with the deterministic source and conv STFT
        g = self.generator
        har_spec, har_phase = self.stft.transform(self.source(f0, noise))
        har = torch.cat([har_spec, har_phase], dim=1)
        for i in range(g.num_upsamples):
            x = F.leaky_relu(x, negative_slope=0.1)
            x_source = g.noise_res[i](g.noise_convs[i](har), s_dec)
            x = g.ups[i](x)
            if i == g.num_upsamples - 1:
                x = g.reflection_pad(x)
            x = x + x_source
            xs = None
            for j in range(g.num_kernels):
                out = g.resblocks[i * g.num_kernels + j](x, s_dec)
                xs = out if xs is None else xs + out
            x = xs / g.num_kernels
        x = g.conv_post(F.leaky_relu(x))
        bins = g.post_n_fft // 2 + 1
        audio = self.stft.inverse(torch.exp(x[:, :bins, :]), torch.sin(x[:, bins:, :]))
        return audio.squeeze(1)


def upstream_decoder(kmodel: Any, en: Any, asr: Any, style: Any, noise: Any) -> dict[str, Any]:
    """KModel.forward_with_tokens' second half, its random draws replaced by ``noise`` (the
    harmonic source's additive noise; the other draws do not reach the audio)."""
    from unittest import mock

    noise_t = torch.as_tensor(noise)
    ref_s = torch.as_tensor(style)
    sd = ref_s.shape[1] // 2

    def randn_like(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return noise_t.clone() if t.shape == noise_t.shape else torch.zeros_like(t)

    with torch.no_grad(), mock.patch("torch.randn_like", randn_like), mock.patch("torch.rand", lambda *a, **k: torch.zeros(*a)):
        f0, n = kmodel.predictor.F0Ntrain(torch.as_tensor(en), ref_s[:, sd:])
        audio = kmodel.decoder(torch.as_tensor(asr), f0, n, ref_s[:, :sd])
    return {"audio": audio.squeeze(1).numpy()}
