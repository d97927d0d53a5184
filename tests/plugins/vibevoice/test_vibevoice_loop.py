"""VibeVoice's run loop on a text longer than the export's caches: spoken in pieces that fit."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.plugins.vibevoice.options import RUN_SETTINGS

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_a_long_text_is_spoken_in_pieces_that_fit_the_caches(tmp_path, monkeypatch):
    """The small export's lm cache (128 slots) cannot hold this text (271 byte tokens): it is
    spoken as pieces cut at punctuation, each within both caches with room for its speech, every
    word once and in order, through one decoder stream written to the WAV as it is produced."""
    from helpers import read_wav

    from zoo.core import RunOptions, WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.registry.store import Registry
    from zoo.core.run.speak import execute, plan
    from zoo.plugins.vibevoice import loop

    text = " ".join(["The quick brown fox jumps over the lazy dog, and then it sleeps."] * 4) + " Done."
    seen = {}
    real_voice_states = loop.voice_states

    def voice_states(presets, voice, cfg):  # the caches and what the voice leaves of them, seen from inside the run
        seen["cfg"], seen["start"] = cfg, real_voice_states(presets, voice, cfg)[2]
        return real_voice_states(presets, voice, cfg)

    monkeypatch.setattr(loop, "voice_states", voice_states)
    written: list[float] = []
    host = PluginHost()
    request = plan(
        host,
        "vibevoice",
        text,
        tmp_path / "long.wav",
        backend="torch",
        weights=WeightsSource.random(0),
        variant="small-fp32",
        options=RunOptions(settings={"max_seconds": "0.5"}).resolved(RUN_SETTINGS, "vibevoice"),
        timestamps=tmp_path / "pieces.json",
    )
    summary = execute(host, request, Registry(tmp_path / "r.toml"), progress=written.append)
    pieces = summary.result.info["pieces"]
    cfg, start = seen["cfg"], seen["start"]
    assert cfg.lm_capacity < len(loop.tokenize(text, cfg)) and len(pieces) > 2
    assert all(loop.fits_caches(p["text_tokens"], start, cfg) for p in pieces)
    assert not loop.fits_caches(max(p["text_tokens"] for p in pieces) * 3, start, cfg)  # the cut was needed
    assert " ".join(p["text"] for p in pieces).split() == text.split()
    assert [p["ended"] for p in pieces] == ["max_seconds"] * len(pieces)
    assert summary.result.frames == sum(p["latents"] for p in pieces) == len(written)  # one report per latent
    audio = read_wav(tmp_path / "long.wav")
    assert (
        len(audio) == len(summary.result.audio)
        and np.abs(audio - np.clip(summary.result.audio, -1, 1)).max() <= 2 / 32767
    )  # 16-bit rounding; random weights exceed full scale
    assert summary.calls_before_first_audio < sum(summary.runtime.calls.values())
    # --timestamps: each piece's span, from the audio it produced: contiguous, covering the WAV
    timings = summary.timings
    assert [t.text for t in timings] == [p["text"] for p in pieces] and {t.kind for t in timings} == {"piece"}
    assert timings[0].start == 0 and all(a.end == b.start for a, b in zip(timings, timings[1:]))
    assert abs(timings[-1].end - len(audio) / 24000) <= 1e-9
