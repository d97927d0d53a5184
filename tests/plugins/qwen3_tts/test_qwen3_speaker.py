"""The plugin on its small configuration: registered, every component exact against upstream in
float64, and the run loop speaking (run with ``python -m pytest tests``)."""

from __future__ import annotations

from zoo.core import RunOptions, WeightsSource
from zoo.core.host.plugins import PluginHost
from zoo.core.host.session import ModelSession
from zoo.core.validation.levels import reference


def test_registered_and_exact_against_upstream(tmp_path):
    host = PluginHost(strict=True)
    session = ModelSession(host, "qwen3_speaker", "fp32", WeightsSource.random(0))
    for component, functions in session.traceables().items():
        result = reference.check_component(
            session.model, session.variant, component, session.reference().model, functions
        )
        bad = [c for c in result.checks if c.status != "passed"]
        assert not bad, bad
        assert any(c.metric.startswith("float64") for c in result.checks)
    runtime = session.torch_runtime(tmp_path)
    spoken = session.call("run_loop", runtime=runtime, text="Hi.", options=RunOptions())
    assert spoken.frames == 3 and len(spoken.audio) == 3 * 240
