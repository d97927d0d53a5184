"""The coreml level at its seam with coremltools (no macOS here): a fake MLModel stands in for CoreML."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np


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
