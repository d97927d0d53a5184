"""Kokoro predictor (work in progress): padded token buckets reproduce KModel on the unpadded tokens."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")


@pytest.fixture(scope="module")
def small():
    from zoo.core import WeightsSource
    from zoo.plugins.kokoro.options import SMALL
    from zoo.plugins.kokoro.reference import load

    return load(WeightsSource.random(0), SMALL).model


def _example(ref, bucket, n, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((1, bucket), np.int32)
    ids[0, 1 : n - 1] = rng.choice(sorted(set(ref.config["vocab"].values())), n - 2)
    style = ref.voices["random"][n - 3].numpy().astype(np.float32)
    return {"input_ids": ids, "valid": np.array([n], np.int32), "style": style, "speed": np.array([1.0], np.float32)}


@pytest.mark.parametrize("n", [7, 20, 32])
def test_padded_bucket_matches_unpadded_kmodel(small, n):
    import torch

    from zoo.plugins.kokoro.traceables import Predictor, upstream_predictor

    predictor = Predictor(small.model, 32).eval()
    example = _example(small, 32, n)
    with torch.no_grad():
        duration, d, t_en = predictor(*(torch.from_numpy(v) for v in example.values()))
    want = upstream_predictor(small.model, **example)
    assert np.array_equal(np.round(duration.numpy()[0, :n]), np.round(want["duration"][0, :n]))  # identical durations
    assert np.max(np.abs(d.numpy() - want["d"])) <= 1e-4
    assert np.max(np.abs(t_en.numpy() - want["t_en"])) <= 1e-4
    assert not d.numpy()[:, n:].any() and not t_en.numpy()[:, :, n:].any()


def test_random_durations_are_realistic(small):
    from zoo.plugins.kokoro.traceables import upstream_predictor

    frames = np.round(upstream_predictor(small.model, **_example(small, 32, 30))["duration"][0, :30])
    assert 1.5 <= frames.mean() <= 4


@pytest.mark.slow
def test_converted_predictor_executes_like_kmodel(small, tmp_path):
    from zoo.core.host.defaults import save_component
    from zoo.core.mil import MilProgram
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import TensorSpec, Traceable
    from zoo.plugins.kokoro.traceables import Predictor, upstream_predictor

    example = _example(small, 32, 11, seed=3)
    traceable = Traceable(
        Predictor(small.model, 32).eval(),
        [
            TensorSpec("input_ids", (1, 32), "int32"),
            TensorSpec("valid", (1,), "int32"),
            TensorSpec("style", example["style"].shape),
            TensorSpec("speed", (1,)),
        ],
        ["duration", "d", "t_en"],
        [example],
    )
    save_component({"main": traceable}, Variant("v", precision="fp32"), tmp_path / "predictor.mlpackage")
    program = MilProgram.load(tmp_path / "predictor.mlpackage")
    assert program.function().op_types()["lstm"] == 6  # masked LSTMs, no pack_padded_sequence
    got = program.run(example)
    want = upstream_predictor(small.model, **example)
    for name in want:
        assert np.max(np.abs(got[name] - want[name])) <= 1e-4, name
