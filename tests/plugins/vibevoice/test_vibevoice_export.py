"""`zoo export vibevoice` end to end on the small architecture: parity, MIL execution, run, verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import publish_and_verify, read_wav

from zoo.core.registry.store import Registry

pytest.importorskip("transformers")
pytest.importorskip("diffusers", reason="the reference scheduler is diffusers'")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("variant", ["small-fp32", "small-fp16"])
def test_export_run_verify(zoo, variant):
    report = json.loads(
        zoo(
            "export", "vibevoice", "--random-weights", "--variant", variant, "--out", str(zoo.out), "--json", check=True
        ).stdout
    )
    assert report["ok"] and report["validation_level"] == "mil"
    if variant == "small-fp16":  # the folder to ship, verified from itself
        publish_and_verify(zoo, report["id"], "vibevoice")
    entry = Registry(zoo.registry).read().get("exports", [])[0]
    assert [c["name"] for c in entry["components"]] == ["lm", "tts_lm", "sampler", "decoder"]
    assert {c["name"] for c in entry["constants"]} == {"presets", "embeddings", "config"}
    checks = {(v["level"], v["component"]): v for v in entry["validation"]}
    for level in ("reference", "mil"):
        for comp in ("lm", "tts_lm", "sampler", "decoder"):
            check = checks[(level, comp)]
            assert check["status"] == "passed", check
            if variant == "small-fp16" and level == "mil":
                assert check["metric"] == "cosine_min" and check["value"] >= 0.999
    # fp32: the lms within their fp16 KV cache's rounding, sampler and decoder tight
    if variant == "small-fp32":
        assert checks[("reference", "lm")]["value"] <= 1e-3 and checks[("reference", "sampler")]["value"] <= 1e-4
    loop = checks[("reference", "loop:utterance")]  # the run loop vs the reference generate loop, 12 latents
    assert loop["status"] == "passed" and "reference_latents=12" in loop["detail"] and "latents=12" in loop["detail"]

    from zoo.core.mil import MilProgram

    tts = MilProgram.load(Path(report["path"]) / "tts_lm.mlpackage").function()
    assert len(tts.states) == 2 * 3 and tts.op_types()["coreml_update_state"] == 2 * len(
        tts.states
    )  # 3 layers, k and v
    assert all(info.shape[0] == 2 for info in tts.states.values())  # positive and negative paths

    out = zoo.workdir / "out.wav"
    run = json.loads(
        zoo(
            "run",
            "vibevoice",
            "Hello there, world.",
            "-o",
            str(out),
            "--backend",
            "mil",
            "--set",
            "max_seconds=2",
            "--json",
            check=True,
        ).stdout
    )
    latents = run["frames"]
    assert latents == 15 and len(read_wav(out)) == 3200 * latents  # ceil(2 s * 7.5), no EOS with these weights
    assert run["calls"]["sampler"] == run["calls"]["decoder"] == latents
    # 3 text windows reached, and each latent fed back but the last (max_seconds ends there); 20 tokens in chunks of 8
    assert run["calls"]["tts_lm"] == 3 + latents - 1 and run["calls"]["lm"] == 3
    assert [p["ended"] for p in run["info"]["pieces"]] == ["max_seconds"]  # one piece: the text fits the caches
    torch_run = json.loads(
        zoo(
            "run",
            "vibevoice",
            "Hello there, world.",
            "-o",
            str(zoo.workdir / "t.wav"),
            "--backend",
            "torch",
            "--random-weights",
            "--variant",
            variant,
            "--set",
            "max_seconds=2",
            "--json",
            check=True,
        ).stdout
    )
    a, b = read_wav(zoo.workdir / "t.wav"), read_wav(out)
    assert torch_run["frames"] == latents
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cosine >= (0.999 if variant == "small-fp32" else 0.99), cosine
    assert zoo("verify", "--execute", check=True).returncode == 0
