"""Whole-loop parity of the pocket_tts run loop (torch backend) with upstream generate_audio."""

from __future__ import annotations

import numpy as np
import pytest
from pocket import small_components, small_ref, small_runtime, speak  # noqa: F401  (fixtures)

TEXT = "Hello there. The quick brown fox jumps over the lazy dog."


def pick_threshold(trajectories: list[list[float]], first: int, margin: float = 2e-3) -> float:
    """An EOS threshold that every trajectory crosses after ``first``, none within ``margin`` of it.

    Among candidates (midpoints between observed logits), the one whose earliest crossing
    is latest wins, so EOS fires well inside the generation rather than at the first allowed frame.
    """
    values = sorted({v for t in trajectories for v in t[first:]})
    best, best_frame = None, -1
    for lo, hi in zip(values, values[1:]):
        if hi - lo < 2 * margin:
            continue
        threshold = (lo + hi) / 2
        frames = []
        for t in trajectories:
            crossing = next((i for i in range(first, len(t) - 4) if t[i] > threshold), None)
            if crossing is None:
                break
            frames.append(crossing)
        else:
            if min(frames) > best_frame:
                best, best_frame = threshold, min(frames)
    if best is None:
        pytest.skip("no EOS threshold is crossed by every chunk of the random model")
    return best


def snr_db(test: np.ndarray, ref: np.ndarray) -> float:
    noise = np.sum((test.astype(np.float64) - ref) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise)


def test_loop_matches_upstream_generate_audio(small_ref, small_runtime):
    import copy

    # EOS logits along a long generation (threshold never crossed), at temperature 0
    probe = speak(small_runtime, TEXT, temperature=0, eos_threshold=1e9, max_tokens=16)
    assert len(probe.info["chunks"]) == 2  # two sentences over 16 tokens: split like upstream
    threshold = pick_threshold([chunk["eos_logits"] for chunk in probe.info["chunks"]], 6)
    ours = speak(small_runtime, TEXT, temperature=0, eos_threshold=threshold, max_tokens=16)

    tts = copy.copy(small_ref.tts)
    tts.temp, tts.eos_threshold = 0.0, threshold
    upstream = tts.generate_audio(small_ref.voices["random"], TEXT, max_tokens=16).numpy()

    assert len(ours.audio) == len(upstream)  # same number of frames
    assert ours.frames * 1920 == len(upstream)
    for chunk in ours.info["chunks"]:
        assert chunk["eos_frame"] is not None and chunk["eos_frame"] >= 6
    assert snr_db(ours.audio, upstream) >= 40


def test_same_seed_same_audio(small_runtime):
    a = speak(small_runtime, "Seeds matter.", seed=7, temperature=0.3, eos_threshold=1e9, frames_after_eos=0)
    b = speak(small_runtime, "Seeds matter.", seed=7, temperature=0.3, eos_threshold=1e9, frames_after_eos=0)
    c = speak(small_runtime, "Seeds matter.", seed=8, temperature=0.3, eos_threshold=1e9, frames_after_eos=0)
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)


def test_two_calls_per_frame(small_runtime):
    result = speak(small_runtime, "Count the calls.", temperature=0)
    calls = small_runtime.calls
    assert calls["mimi"] == result.frames
    assert calls["flowlm.step"] == result.frames + 1  # the step that ends generation emits no frame
    assert calls["flowlm.prefill"] == 1  # the voice is cached: only the text is prefilled


def test_bad_run_options_are_refused(small_runtime):
    with pytest.raises(ValueError, match="unknown pocket_tts run option"):
        speak(small_runtime, "x", speed=2)
    with pytest.raises(ValueError, match="unknown voice"):
        from zoo.core import RunOptions
        from zoo.plugins.pocket_tts import loop

        loop.run(small_runtime, "x", RunOptions(voice="nobody"))
