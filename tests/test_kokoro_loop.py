"""Kokoro run loop (work in progress) against KModel.forward, torch modules as the components."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small():
    from zoo.core import WeightsSource
    from zoo.plugins.kokoro.reference import load

    return load(WeightsSource.random(0), size="small").model


class ModuleRuntime:
    """The loop's runtime interface over plain torch modules."""

    def __init__(self, modules):
        self.modules = modules

    def __call__(self, component, inputs, function="main"):
        with torch.no_grad():
            out = self.modules[component](*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
        names = ["audio"] if component == "decoder" else ["duration", "d", "t_en"]
        return {n: o.numpy() for n, o in zip(names, out if isinstance(out, tuple) else (out,))}


def _speak(small, phonemes, bucket):
    from unittest import mock

    from zoo.plugins.kokoro import loop
    from zoo.plugins.kokoro.decoder import Decoder
    from zoo.plugins.kokoro.traceables import Predictor

    runtime = ModuleRuntime({"predictor": Predictor(small.model, bucket).eval(), "decoder": Decoder(small.model).eval()})
    rng = np.random.default_rng(1)
    drawn = {}

    def noise(shape):
        drawn["noise"] = rng.standard_normal(shape).astype(np.float32)
        return drawn["noise"]

    audio, frames = loop.synthesize(runtime, phonemes, small.config["vocab"], small.voices["random"], [bucket], noise=noise)
    source = torch.from_numpy(drawn["noise"])
    with torch.no_grad(), mock.patch("torch.randn_like", lambda t, *a, **k: source.clone() if t.shape == source.shape else torch.zeros_like(t)):
        want = small.model(phonemes, small.voices["random"][len(phonemes) - 1], 1, return_output=True)
    return audio, frames, want.audio.numpy().reshape(-1), want.pred_dur.numpy()


PHONEMES = "həlˈO wˈɜːld. hˌW ɑːɹ juː tədˈA?"  # espeak-ng's en-us for "Hello world. How are you today?"


def test_espeak_g2p_works_offline():
    from misaki import espeak

    from zoo.plugins.kokoro import loop

    assert loop.phonemize("Hello world. How are you today?", espeak.EspeakG2P(language="en-us")) == PHONEMES


def test_utterance_matches_kmodel_with_an_exact_bucket(small):
    from zoo.plugins.kokoro import loop

    length = len(loop.tokens(PHONEMES, small.config["vocab"]))
    audio, frames, want, want_frames = _speak(small, PHONEMES, length)
    assert np.array_equal(frames, want_frames)  # identical durations
    assert audio.shape == want.shape == (600 * int(frames.sum()),)
    inner = np.abs(audio - want)[3000:-1200].max() / np.abs(want).max()  # away from the first frames' atan2 flip
    assert inner <= 1e-3


def test_padded_bucket_keeps_durations(small):
    """A padded bucket gives identical durations; its features differ from KModel's by ~1e-6
    (other GEMM shapes), which the chaotic decoder turns into different audio samples —
    recorded in plugins/kokoro/decoder.py, not asserted here."""
    audio, frames, want, want_frames = _speak(small, PHONEMES, 64)
    assert np.array_equal(frames, want_frames) and audio.shape == want.shape
