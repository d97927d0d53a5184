"""A plugin's run loop on a recording runtime, checked against its loop contract: what the tests use
to keep every plugin's contract (``loop_contract``) and loop (``run_loop``) saying the same thing."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..host.plugins import PluginHost
from ..host.session import ModelSession
from ..plugin.contract import Event, LoopContract, check
from ..plugin.run import RunOptions, RunResult
from ..plugin.spec import WeightsSource
from ..runtime.recording import RecordingRuntime


@dataclass
class ContractRun:
    contract: LoopContract
    log: list[Event]
    result: RunResult
    problems: list[str]


def run_against_contract(
    host: PluginHost,
    model_name: str,
    text: str,
    options: RunOptions,
    variant: str = "small-fp32",
    weights: WeightsSource | None = None,
    contract: Any = None,
) -> ContractRun:
    """Run ``model_name``'s loop on its torch traceables through a recording runtime and check the log
    against the plugin's contract (or ``contract``, given: a test's altered copy)."""
    session = ModelSession(host, model_name, variant, weights or WeightsSource.random(0))
    model = session.model
    with tempfile.TemporaryDirectory(prefix="zoo-contract-") as tmp:
        inner = session.torch_runtime(Path(tmp))
        if contract is None:
            contract = host.call(model, "loop_contract", constants=inner.constants)
        if contract is None:
            raise ValueError(f"plugin of {model_name!r} declares no loop contract")
        runtime = RecordingRuntime(inner)
        resolved = options.resolved(model.run_settings, model.name)
        result = host.call(model, "run_loop", runtime=runtime, text=text, options=resolved)
        functions = {(c, f): t for c, fns in inner.traceables.items() for f, t in fns.items()}
        return ContractRun(contract, list(runtime.log), result, check(contract, runtime.log, functions))
