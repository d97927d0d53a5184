"""qwen3_speaker on its small configuration, in process: registered through the façade, every bucket
exact against upstream in float64 on the unpadded clip, and each conversion trap met caught: mel
normalisation (htk vs slaney), STFT padding (constant vs reflect), Res2Net split order, pooling over
the padding, reflection at the bucket's end instead of the clip's."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
import torch

from zoo.core import RunOptions, WeightsSource
from zoo.core.host.plugins import PluginHost
from zoo.core.host.session import ModelSession
from zoo.core.validation.levels import reference

pytest.importorskip("librosa", reason="upstream's front end imports librosa (zoo-tts[qwen3_tts])")
if find_spec("qwen_tts") is None:  # not imported: its package __init__ needs the whole inference stack
    pytest.skip("the reference is qwen-tts 0.1.1 (make setup installs it, --no-deps)", allow_module_level=True)

from zoo.plugins.qwen3_tts import encoder as port  # noqa: E402
from zoo.plugins.qwen3_tts import frontend, traceables, upstream  # noqa: E402
from zoo.plugins.qwen3_tts import reference as qref  # noqa: E402
from zoo.plugins.qwen3_tts.config import HOP, LOG_FLOOR, MAGNITUDE_EPS, N_FFT, frames  # noqa: E402
from zoo.plugins.qwen3_tts.options import SMALL  # noqa: E402
from zoo.plugins.qwen3_tts.signals import voice_clip  # noqa: E402

#: float64: port and upstream differ only by summation order (measured 2.2e-16 on every bucket)
FLOAT64_REL = 1e-9


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def small():
    return qref.load(WeightsSource.random(0), SMALL).model


def float64_error(module, ref, example) -> float:
    """The port ``module`` against upstream on the unpadded clip, both in float64."""
    wide = {"mels": example["mels"].astype(np.float64), "valid": example["valid"]}
    module.double()
    ref.encoder.double()
    try:
        with torch.no_grad():
            ours = module(torch.from_numpy(wide["mels"]), torch.from_numpy(wide["valid"])).numpy()
        want = traceables.upstream_embedding(ref.encoder, **wide)["embedding"]
    finally:
        module.float()
        ref.encoder.float()
    return rel(ours, want)


def test_upstream_imports_under_transformers_5():
    """Only qwen-tts's two model files are imported (upstream.py): they load under zoo's transformers."""
    import sys

    import transformers

    modeling, configuration = upstream.modules()
    assert int(transformers.__version__.split(".")[0]) >= 5
    assert hasattr(modeling, "Qwen3TTSSpeakerEncoder") and hasattr(modeling, "mel_spectrogram")
    assert configuration.Qwen3TTSSpeakerEncoderConfig().enc_dim == 1024
    assert getattr(sys.modules["qwen_tts"], "__zoo_stub__", False)  # the package __init__ never ran


def test_registered_and_exact_against_upstream(tmp_path):
    host = PluginHost(strict=True)
    session = ModelSession(host, "qwen3_speaker", "small-fp32", WeightsSource.random(0))
    assert (session.model.input, session.model.output) == ("voice", "embedding")
    functions = session.traceables()["encoder"]
    assert sorted(functions) == ["s12", "s3", "s6"]
    result = reference.check_component(session.model, session.variant, "encoder", session.reference().model, functions)
    bad = [c for c in result.checks if c.status != "passed"]
    assert not bad, bad
    f64 = [c for c in result.checks if c.metric == "float64_rel"]
    assert f64 and max(c.value for c in f64) <= FLOAT64_REL
    # the padded clips (70 % of a bucket) are among the examples: padding never reaches the embedding
    assert any(int(ex["valid"][0]) < traceables.bucket_frames(6) for ex in functions["s6"].examples)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
def test_property_grid_float64(seed, scale):
    """Seeds x weight scales: the port equals upstream in float64 on a padded clip of each bucket."""
    ref = qref.load(WeightsSource.random(seed), SMALL).model
    with torch.no_grad():
        for p in ref.encoder.parameters():
            p.mul_(scale)
    for seconds in SMALL.buckets:
        length = traceables.bucket_frames(seconds)
        example = traceables._example(seed + seconds, length, int(0.6 * length))
        assert float64_error(port.SpeakerEncoder(ref.encoder, length).eval(), ref, example) <= FLOAT64_REL


# -- mutations: each trap changes the embedding far beyond the bound; the unmutated port does not


def padded_example(length: int, fill: float = 0.7) -> dict:
    return traceables._example(3, length, int(fill * length))


def test_mutation_pooling_over_padding_is_caught(small, monkeypatch):
    """Attentive pooling that counts the padded frames (upstream's unmasked statistics) is caught."""
    length = traceables.bucket_frames(6)
    example = padded_example(length)
    assert float64_error(port.SpeakerEncoder(small.encoder, length).eval(), small, example) <= FLOAT64_REL

    def unmasked(self, x, valid, mask, count):
        ones = torch.ones_like(mask)
        return original(self, x, valid, ones, torch.full_like(count, float(x.shape[3])))

    original = port.AttentivePooling.forward
    monkeypatch.setattr(port.AttentivePooling, "forward", unmasked)
    error = float64_error(port.SpeakerEncoder(small.encoder, length).eval(), small, example)
    assert error > 1e3 * FLOAT64_REL, error


def test_mutation_reflect_at_bucket_end_is_caught(small, monkeypatch):
    """Convolutions reflecting at the bucket's end (the padded length) instead of the clip's are caught."""
    length = traceables.bucket_frames(3)
    example = padded_example(length)
    monkeypatch.setattr(port.ReflectConv, "forward", lambda self, x, valid: _bucket_reflect(self, x))
    error = float64_error(port.SpeakerEncoder(small.encoder, length).eval(), small, example)
    assert error > 1e3 * FLOAT64_REL, error


def _bucket_reflect(conv, x):
    if not conv.pad:
        return conv.conv(x)
    return conv.conv(torch.nn.functional.pad(x[:, :, 0], (conv.pad, conv.pad), mode="reflect")[:, :, None])


def test_mutation_res2net_split_order_is_caught(small, monkeypatch):
    """Res2Net's parts taken in reverse order (the hierarchy's direction) is caught: the port's own
    split, not torch.chunk (upstream uses that too)."""
    length = traceables.bucket_frames(3)
    example = padded_example(length, 1.0)
    original = port.Res2Net.forward

    def reversed_parts(self, x, valid):
        flipped = torch.cat(tuple(reversed(torch.chunk(x, self.scale, dim=1))), dim=1)
        return original(self, flipped, valid)

    monkeypatch.setattr(port.Res2Net, "forward", reversed_parts)
    error = float64_error(port.SpeakerEncoder(small.encoder, length).eval(), small, example)
    assert error > 1e3 * FLOAT64_REL, error


# -- the front end: numpy (run time) against upstream's torch mel_spectrogram on the same audio

#: numpy (float64, rounded to float32) vs upstream (float32 STFT and matmul) on log-mels, relative to
#: their largest magnitude. Measured on 4.2 s of the voice-like test signal and of white noise: 4.0e-6
#: and 6.0e-7 (float32's roundoff through the STFT); the traps below move them by 1.35 (htk) and 0.25
#: (constant padding)
FRONTEND_REL = 1e-4


def upstream_mels(audio) -> np.ndarray:
    return upstream.mel_spectrogram(torch.from_numpy(audio))[0].numpy()


def ours(audio, basis) -> np.ndarray:
    return frontend.log_mel(audio, basis, N_FFT, HOP, LOG_FLOOR, MAGNITUDE_EPS)


@pytest.mark.parametrize("signal", ["voice", "noise"])
def test_frontend_matches_upstream(signal):
    audio = (
        voice_clip(4.2, 5)
        if signal == "voice"
        else (0.1 * np.random.default_rng(1).standard_normal(100800)).astype(np.float32)
    )
    want = upstream_mels(audio)
    got = ours(audio, frontend.mel_basis())
    assert got.shape == want.shape == (frames(audio.size), 128)
    assert rel(got, want) <= FRONTEND_REL


def test_frontend_mutation_htk_mels_is_caught():
    """A filterbank on the HTK mel scale without slaney's area normalisation is caught."""
    from librosa.filters import mel

    audio = voice_clip(4.2, 5)
    htk = mel(sr=24000, n_fft=N_FFT, n_mels=128, fmin=0, fmax=12000, htk=True, norm=None).astype(np.float32)
    assert rel(ours(audio, htk), upstream_mels(audio)) > 100 * FRONTEND_REL


def test_frontend_mutation_constant_padding_is_caught(monkeypatch):
    """Zero (constant) padding of the signal instead of reflection is caught."""
    audio = voice_clip(4.2, 5)
    original = np.pad
    monkeypatch.setattr(frontend.np, "pad", lambda a, w, mode="constant": original(a, w, mode="constant"))
    assert rel(ours(audio, frontend.mel_basis()), upstream_mels(audio)) > 100 * FRONTEND_REL


def test_loop_on_torch_equals_upstream(tmp_path, small):
    """The whole loop (WAV -> front end -> bucket) on the torch traceables against upstream's
    extract_speaker_embedding arithmetic, for a clip in each bucket and one longer than the last."""
    from zoo.core.kit.audio import write_wav
    from zoo.core.validation.metrics import compare
    from zoo.plugins.qwen3_tts.parity import TOLERANCE, upstream_embedding

    host = PluginHost(strict=True)
    session = ModelSession(host, "qwen3_speaker", "small-fp32", WeightsSource.random(0))
    runtime = session.torch_runtime(tmp_path)
    for seconds, bucket in ((2.0, 3), (4.2, 6), (9.5, 12)):
        clip = voice_clip(seconds, int(seconds * 10))
        path = tmp_path / f"clip{seconds}.wav"
        write_wav(path, clip, 24000)
        result = session.call("run_loop", runtime=runtime, text="", options=RunOptions(voice=str(path)))
        assert result.values.shape == (48,) and result.info["buckets"] == [bucket]
        want = upstream_embedding(session.reference().model, clip)
        # the gate's own metric, in float64: a float32 cosine resolves 1 only to ~6e-8, a bound of 1e-7
        # sat on its last digit (0.99999988 = one float32 step under 1 - 1e-7; in float64 1 - 8e-15)
        cos = compare(result.values, want)["cosine"]
        assert cos >= TOLERANCE.cosine_min, (seconds, cos)


def test_ten_minute_recording_stays_in_bounded_memory(tmp_path):
    """A 10-minute WAV is read a 12 s window at a time: the loop's peak of Python-tracked memory (numpy
    included) stays under a quarter of what the recording alone takes decoded as float32 (57.6 MB).
    The encoder is stood in for by a runtime that checks each call's inputs and answers a fixed vector
    (its own memory is per window, whatever the recording's length; 50 torch calls would take 30 s)."""
    import tracemalloc
    import wave

    host = PluginHost(strict=True)
    session = ModelSession(host, "qwen3_speaker", "small-fp32", WeightsSource.random(0))
    real = session.torch_runtime(tmp_path)

    class Encoder:  # the Runtime protocol, answering without the model
        backend, constants, calls = "torch", real.constants, []

        def __call__(self, component, inputs, function="main"):
            length = traceables.bucket_frames(int(function[1:]))
            assert inputs["mels"].shape == (1, 128, 1, length) and 0 < int(inputs["valid"][0]) <= length
            self.calls.append(function)
            return {"embedding": np.ones((1, 48), np.float32)}

        def input_dtype(self, component, name, function="main"):
            return np.float32

    runtime = Encoder()
    path = tmp_path / "long.wav"
    minute = (np.round(voice_clip(60.0, 9) * 32767)).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:  # written a minute at a time: the test holds no 10 minutes either
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        for _ in range(10):
            w.writeframes(minute)
    decoded = 600 * 24000 * 4
    progress = []
    tracemalloc.start()
    try:
        result = session.call(
            "run_loop",
            runtime=runtime,
            text="",
            options=RunOptions(voice=str(path), on_progress=lambda done, total: progress.append((done, total))),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.info["windows"] == 50 and runtime.calls == ["s12"] * 50
    assert np.array_equal(result.values, np.ones(48, np.float32))
    assert len(progress) == 50 and progress[-1] == (600.0, 600.0)
    # measured: 12.8 MB (the 12 s window as read and as floats, its padded float64 copy, a block of spectra)
    assert peak < decoded / 4, f"peak {peak / 1e6:.1f} MB"
