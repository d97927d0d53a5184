"""`zoo export kokoro --variant small-fp16`: the harmonic source stays fp32, the rest is fp16
(a file of its own so that the two kokoro exports run on different test workers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import export_small

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
pytestmark = pytest.mark.slow


def test_export_small_fp16_keeps_the_harmonic_source_fp32(zoo):
    report, entry, checks = export_small(zoo, "kokoro", "small-fp16")
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
