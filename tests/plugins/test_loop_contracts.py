"""Every plugin's loop contract (what `zoo publish` tells a native app) against its run loop: the loop
runs on a recording runtime over the small variant's traceables, for a short input and a long one
that makes it repeat its outer block, and every call, reset and state load it makes is checked against
the contract (order, inputs, outputs, states, shapes, dtypes). Changing either without the other fails
here (tests/core/test_loop_contract.py shows each rule catching its drift)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import jsonschema
import numpy as np
import pytest

pytest.importorskip("torch")

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. It sleeps all afternoon, and then it wakes. "
    "Where did the dog go? Nobody knows, but the fox does not care at all."
)


def _wav(path: Path, seconds: float) -> Path:
    rate = 24000
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 180 * t + 3 * np.sin(2 * np.pi * 4 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((voice * 32767).astype(np.int16).tobytes())
    return path


# model -> (short case, long case): text, voice (a WAV's seconds, or None), --set, and how to count the
# outer block's passes in the result (it must be more than one for the long case)
CASES = {
    "kokoro": (("Hello there.", None, {}), (PARAGRAPH * 3, None, {}), lambda r: len(r.info["pieces"])),
    "pocket_tts": (
        ("Hello there.", None, {}),
        (PARAGRAPH, 2.0, {"max_tokens": "12"}),  # a cloned voice, and a chunk per sentence
        lambda r: len(r.info["chunks"]),
    ),
    "vibevoice": (
        ("Hello there.", None, {"max_seconds": "0.3"}),
        (PARAGRAPH * 2, None, {"max_seconds": "0.3"}),
        lambda r: len(r.info["pieces"]),
    ),
    "qwen3_speaker": (("", 2.5, {}), ("", 30.0, {}), lambda r: r.info["windows"]),
}


@pytest.mark.parametrize("model", sorted(CASES))
def test_the_loop_does_what_its_contract_says(model, tmp_path, monkeypatch):
    from zoo.core import RunOptions
    from zoo.core.host.plugins import PluginHost
    from zoo.core.release.manifest import SCHEMA_FILE
    from zoo.core.run.contract import run_against_contract

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))  # a cloned voice is cached: not in the user's cache
    host = PluginHost()
    short, long, passes = CASES[model]
    counts = []
    for i, (text, seconds, settings) in enumerate((short, long)):
        voice = str(_wav(tmp_path / f"voice{i}.wav", seconds)) if seconds else None
        run = run_against_contract(host, model, text, RunOptions(seed=0, voice=voice, settings=settings))
        assert run.problems == [], (model, i, run.problems)
        assert run.log and all(e.kind in ("call", "reset", "load") for e in run.log)
        counts.append(passes(run.result))
    assert counts[0] >= 1 and counts[1] > 1, counts  # the long input repeated the outer block
    # the contract as manifest.json carries it is valid against the shipped schema
    schema = json.loads(SCHEMA_FILE.read_text())
    loop = run.contract.as_dict()
    jsonschema.validate(loop, {**schema["$defs"]["loop"], "$defs": schema["$defs"]})
    assert json.loads(json.dumps(loop)) == loop
