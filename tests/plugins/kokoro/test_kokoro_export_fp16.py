"""`zoo export kokoro --variant small-fp16`: the harmonic source stays fp32, the rest is fp16; then
small-fp16-mixed on its stages (a file of its own so that the kokoro exports of test_kokoro_export
run on another test worker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import export_small, publish_and_verify

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_fp16(module_zoo):
    return export_small(module_zoo, "kokoro", "small-fp16")


def test_export_small_fp16_keeps_the_harmonic_source_fp32(small_fp16):
    report, entry, checks = small_fp16
    assert entry["variant"]["options"]["fp32_scopes"] == ["harmonic"]  # recorded with the export
    assert checks[("mil", "predictor", "cosine_min")]["value"] >= 0.999
    assert checks[("mil", "predictor", "duration:mismatches")]["status"] == "passed"  # flips only next to a boundary
    decoder = checks[("mil", "decoder", "spectral_max")]  # 3x the torch decoder's own movement for an fp16 perturbation
    assert decoder["status"] == "passed" and "fp16 perturbation" in decoder["basis"]

    from zoo.core.mil import MilProgram

    decoder = MilProgram.load(Path(report["path"]) / "decoder.mlpackage").function()
    dtypes = {}
    for step in decoder.steps:
        for _, dtype, _ in step.outputs:
            dtypes.setdefault(step.op_type, set()).add(np.dtype(dtype).name)
    assert dtypes["cumsum"] == {"float32"}  # the source's phase accumulation (and its STFT's frame mask)
    assert dtypes["atan"] == dtypes["sqrt"] == {"float32"}  # the source spectrum: phase (atan2) and magnitude
    assert "float16" in dtypes["conv"] and "float16" in dtypes["instance_norm"]  # the rest is fp16


def test_the_small_fp16_export_published_verifies_from_its_folder(module_zoo, small_fp16):
    report, entry, _ = small_fp16
    manifest = publish_and_verify(module_zoo, entry["id"], "kokoro")
    assert manifest["loop"]["front_end"]["kind"] == "g2p" and "figures/spectrograms.png" in {
        f["path"] for f in manifest["files"]
    }


def test_export_small_fp16_mixed_after_small_fp16(module_zoo, small_fp16):
    """kokoro's compressed variant, exported after small-fp16 into the same stage cache (it reuses
    the reference stages): widths chosen per layer, durations identical at the mil level and in the
    whole loop, the chaotic decoder within its own spectral bound, and `zoo run` drives it."""
    zoo = module_zoo
    report, entry, checks = export_small(zoo, "kokoro", "small-fp16-mixed")
    stages = {s["stage"]: s["status"] for s in report["stages"]}
    assert all(stages[name] == "cached" for name in ("parity:predictor", "parity:decoder", "constants", "loop_parity"))
    record = {c["name"]: c["compression"] for c in entry["components"]}
    for comp in ("predictor", "decoder"):
        assert record[comp]["mode"] == "mixed" and set(record[comp]["bits"].values()) <= {4, 6, 8}
        assert (
            record[comp]["bytes_after"] < 0.6 * record[comp]["bytes_before"]
        )  # weights coremltools cannot group stay fp16
    # durations planned by their margins to the rounding boundary (a target of their own, not 50 dB)
    # and judged by how far they move: no more than a ±10% tempo change moves them
    duration = record["predictor"]["plan"]["outputs"]["duration"]
    assert duration["estimated_db"] >= duration["target_db"] - 3
    moved = checks[("mil", "predictor", "duration:moved")]
    assert moved["status"] == "passed" and moved["value"] <= moved["threshold"] / 2 + 10  # planned for half of the gate
    assert checks[("mil", "predictor", "duration:jumps")]["value"] == 0
    assert checks[("mil", "decoder", "spectral_max")]["status"] == "passed"
    assert checks[("mil", "loop:compressed", "segments:moved")]["status"] == "passed"
    assert checks[("mil", "loop:compressed", "spectral_max")]["status"] == "passed"
    assert "aligned segment by segment" in checks[("mil", "loop:compressed", "spectral_max")]["basis"]
    # `zoo run` drives the compressed packages end to end: the audio is as long as its frames say and
    # finite, and its length is within the tempo rule of the uncompressed export's on the same text and
    # seed (random weights do not speak: what it says is judged by the loop check above, not here)
    import json

    from zoo.core.kit.audio import read_wav
    from zoo.core.validation.metrics import INTEGER_TEMPO

    runs = {}
    for variant in ("small-fp16", "small-fp16-mixed"):
        wav = zoo.workdir / f"{variant}.wav"
        report = json.loads(
            zoo(
                "run",
                "kokoro",
                "Compressed weights still speak.",
                "--variant",
                variant,
                "--backend",
                "mil",
                "-o",
                str(wav),
                "--json",
                check=True,
            ).stdout
        )
        audio, _ = read_wav(wav)
        assert len(audio) == report["frames"] * 600 and np.isfinite(audio).all() and np.abs(audio).max() > 0
        runs[variant] = report["frames"]
    assert abs(runs["small-fp16-mixed"] - runs["small-fp16"]) <= INTEGER_TEMPO * runs["small-fp16"], runs
