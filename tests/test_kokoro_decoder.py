"""Kokoro decoder (work in progress): each replaced piece against upstream."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
torch = pytest.importorskip("torch")


def test_conv_stft_reproduces_torch_stft_and_istft():
    from kokoro.istftnet import TorchSTFT

    from zoo.plugins.kokoro.decoder import ConvSTFT

    torch.manual_seed(0)
    ours, upstream = ConvSTFT(20, 5), TorchSTFT(20, 5, 20)
    x = torch.randn(1, 6000)
    m1, p1 = ours.transform(x)
    m2, p2 = upstream.transform(x)
    assert torch.max(torch.abs(m1 - m2)) <= 1e-5
    wrapped = torch.remainder(p1 - p2 + torch.pi, 2 * torch.pi) - torch.pi  # (test-side only) phase distance
    assert torch.max(torch.abs(wrapped)) <= 1e-4
    mag, phase = torch.rand(1, 11, 301) + 0.1, (torch.rand(1, 11, 301) - 0.5) * 6
    y1, y2 = ours.inverse(mag, phase), upstream.inverse(mag, phase)
    assert y1.shape == y2.shape and torch.max(torch.abs(y1 - y2)) <= 1e-5


@pytest.fixture(scope="module")
def small():
    from zoo.core import WeightsSource
    from zoo.plugins.kokoro.reference import load

    return load(WeightsSource.random(0), size="small").model


def _inputs(ref, frames=40):
    rng = np.random.default_rng(0)
    p = ref.model.predictor.text_encoder
    en = rng.standard_normal((1, p.d_model + p.sty_dim, frames)).astype(np.float32)
    asr = rng.standard_normal((1, 512, frames)).astype(np.float32)
    style = ref.voices["random"][10].numpy().astype(np.float32)
    noise = rng.standard_normal((1, 600 * frames, 9)).astype(np.float32)
    return en, asr, style, noise


def test_decoder_body_matches_upstream_given_the_same_source_and_stft(small):
    """With upstream's harmonic source and STFT, the rest of the decoder (F0/N prediction,
    decoder blocks, generator) reproduces KModel exactly: only the replaced pieces differ.

    (End to end the decoder is chaotic: a 1e-5 relative change of the harmonic source
    moves the audio by ~20% through the STFT phase of near-silent bins, so the conv STFT
    is checked on its own above rather than through the whole generator.)"""
    from unittest import mock

    from zoo.plugins.kokoro.decoder import Decoder, upstream_decoder

    en, asr, style, noise = _inputs(small)
    want = upstream_decoder(small.model, en, asr, style, noise)["audio"]
    gen = small.model.decoder.generator
    sd = style.shape[1] // 2
    with torch.no_grad():
        f0, _ = small.model.predictor.F0Ntrain(torch.from_numpy(en), torch.from_numpy(style)[:, sd:])
        nt = torch.from_numpy(noise)
        with mock.patch("torch.randn_like", lambda t, *a, **k: nt.clone() if t.shape == nt.shape else torch.zeros_like(t)):
            har, _, _ = gen.m_source(gen.f0_upsamp(f0[:, None]).transpose(1, 2))

    class UpstreamSource(torch.nn.Module):
        def forward(self, f0_, noise_):
            return har.transpose(1, 2).squeeze(1)

    decoder = Decoder(small.model).eval()
    decoder.source = UpstreamSource()
    decoder.stft = gen.stft
    with torch.no_grad():
        ours = decoder(*(torch.from_numpy(v) for v in (en, asr, style, noise))).numpy()
    assert ours.shape == want.shape == (1, 600 * 40)
    assert np.max(np.abs(ours - want)) <= 1e-6 * np.abs(want).max()
    assert float((f0 > 10).float().mean()) >= 0.9  # mostly voiced: the sine path is exercised


def test_harmonic_source_close_to_upstream(small):
    from unittest import mock

    from zoo.plugins.kokoro.decoder import HarmonicSource

    gen = small.model.decoder.generator
    f0 = 100 + 100 * torch.rand(1, 80)
    noise = torch.randn(1, 300 * 80, 9)
    with torch.no_grad(), mock.patch("torch.randn_like", lambda t, *a, **k: noise.clone() if t.shape == noise.shape else torch.zeros_like(t)):
        want, _, _ = gen.m_source(gen.f0_upsamp(f0[:, None]).transpose(1, 2))
        ours = HarmonicSource(gen.m_source, 300)(f0, noise)
    assert torch.equal(ours, want.transpose(1, 2).squeeze(1))  # bit for bit
