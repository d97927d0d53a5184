"""The coreml level at its seam with coremltools (no macOS here): a fake MLModel stands in for CoreML."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def test_states_are_written_under_coreml_identifiers_and_errors_are_failed_checks(monkeypatch, tmp_path):
    import coremltools as ct

    from zoo.core.plugin.spec import Tolerance
    from zoo.core.validation import parity
    from zoo.core.validation.levels import coreml, level

    monkeypatch.setattr(coreml, "available", lambda: (True, ""))
    written: dict[str, object] = {}

    class FakeState:
        def write_state(self, name, value):
            written[name] = value

    class FakeModel:
        def __init__(self, path, function_name=None):
            self.path = path

        def get_spec(self):
            return SimpleNamespace(description=SimpleNamespace(state=[object()]))

        def make_state(self):
            return FakeState()

        def predict(self, inputs, state=None):
            raise RuntimeError("E5RT: compilation failed")

    monkeypatch.setattr(ct.models, "MLModel", FakeModel)
    states = {"layers.0.cache.k": np.ones(2, np.float16)}
    parity.save(
        tmp_path / "p.safetensors.gz",
        [parity.ParityCase("main", 0, {"x": np.zeros(2, np.float32)}, {"y": np.zeros(2, np.float32)}, states)],
    )
    checks = level("coreml").execute(
        "lm", tmp_path / "lm.mlpackage", tmp_path / "p.safetensors.gz", Tolerance(rel=1e-3)
    )
    assert list(written) == ["layers_0_cache_k"]  # the buffer's name as coremltools names the state
    assert [(c.level, c.status, c.metric) for c in checks] == [("coreml", "failed", "execute")]
    assert "RuntimeError: E5RT: compilation failed" in checks[0].reason


def test_importing_coremltools_leaves_the_host_logging_setting_alone():
    """In a fresh process (coremltools not yet imported): the host's logging.disable level survives."""
    import subprocess
    import sys

    code = (
        "import logging; logging.disable(logging.INFO); from zoo.core.coreml.tools import import_coremltools; "
        "import_coremltools(); print(logging.root.manager.disable)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == str(logging.INFO)


SEAM = Path(__file__).resolve().parents[1] / "coreml_seam"


@pytest.mark.slow  # whole exports and runs (recognised or in fresh processes): not in make test-fast
def test_the_coreml_level_and_backend_run_end_to_end_through_the_seam_recorded_as_the_seam(tmp_path, tiny_site):
    """With CoreML's ``MLModel`` answered by zoo's MIL interpreter (tests/coreml_seam): the coreml level
    executes every component on its parity cases and passes, and `zoo run --backend coreml` speaks
    exactly as `--backend mil` does. Nothing is recorded as CoreML: the verdicts are the seam's
    (``coreml-seam``, the engine in every detail), the export's level stays ``mil``, and the run
    reports the seam as its engine."""
    import json
    import wave

    from conftest import Zoo

    from zoo.core.registry.store import Registry

    zoo = Zoo(tmp_path, [tiny_site, SEAM])  # the seam is a sitecustomize: each command runs fresh (prewarmed.run)
    zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    entry = Registry(zoo.registry).exports()[0]
    seam = [v for v in entry.validation if v["level"] == "coreml-seam"]
    assert {v["component"] for v in seam} == {"encoder", "vocoder"}
    assert all(v["status"] == "passed" and "behind the CoreML seam" in v["detail"] for v in seam), seam
    assert not [v for v in entry.validation if v["level"] == "coreml"]  # never recorded as CoreML
    assert entry.validation_level == "mil"
    wavs = {backend: tmp_path / f"{backend}.wav" for backend in ("coreml", "mil")}
    reports = {
        backend: json.loads(
            zoo("run", "tiny", "Hello there", "-o", str(wav), "--backend", backend, "--json", check=True).stdout
        )
        for backend, wav in wavs.items()
    }
    assert reports["coreml"]["backend"] == "coreml" and "seam" in reports["coreml"]["engine"]
    assert "engine" not in reports["mil"]
    frames = {}
    for backend, wav in wavs.items():
        with wave.open(str(wav)) as f:
            frames[backend] = f.readframes(f.getnframes())
    assert frames["coreml"] == frames["mil"] and len(frames["mil"]) > 0
