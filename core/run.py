"""`zoo run`: drive a plugin's run_loop over one backend and write a WAV."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import write_wav
from .plugins import PluginHost
from .registry import Registry
from .runtime import BACKENDS, BackendUnavailable, ComponentRuntime, CoreMLRuntime, MilRuntime
from .spec import RunOptions, RunResult, WeightsSource


@dataclass
class RunSummary:
    result: RunResult
    runtime: ComponentRuntime
    wall_seconds: float
    source: str

    def as_dict(self, output: Path, model: str) -> dict[str, Any]:
        audio_seconds = len(self.result.audio) / self.result.sample_rate
        calls = dict(sorted(self.runtime.calls.items()))
        total = sum(calls.values())
        return {
            "model": model,
            "backend": self.runtime.backend,
            "source": self.source,
            "output": str(output),
            "sample_rate": self.result.sample_rate,
            "frames": self.result.frames,
            "audio_seconds": audio_seconds,
            "wall_seconds": self.wall_seconds,
            "realtime_factor": audio_seconds / self.wall_seconds if self.wall_seconds > 0 else None,
            "calls": calls,
            "calls_total": total,
            "calls_per_audio_second": total / audio_seconds if audio_seconds > 0 else None,
            **({"info": self.result.info} if self.result.info else {}),
        }


def build_runtime(
    host: PluginHost,
    model_name: str,
    backend: str,
    registry: Registry,
    weights: WeightsSource | None,
    variant: str | None,
    workdir: Path,
) -> tuple[ComponentRuntime, str]:
    host.model(model_name)  # an unknown model is refused before anything loads
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        from .session import ModelSession

        session = ModelSession(host, model_name, variant, weights)
        return session.torch_runtime(workdir), f"traceables ({session.weights.describe()}, variant {session.variant.name})"
    entry = registry.latest_valid(model_name)
    if entry is None:
        raise BackendUnavailable(f"no valid export of {model_name!r} in {registry.path}; run `zoo export {model_name}` first")
    if variant and entry["variant"]["name"] != variant:
        matches = [e for e in registry.find(model_name) if e["variant"]["name"] == variant and e.get("status") == "valid"]
        if not matches:
            raise BackendUnavailable(f"no valid {variant!r} export of {model_name!r} in {registry.path}")
        entry = max(matches, key=lambda e: e["created_at"])
    packages = {c["name"]: registry.member(entry, c["path"]) for c in entry["components"]}
    constants = {c["name"]: registry.member(entry, c["path"]) for c in entry.get("constants", [])}
    missing = [str(p) for p in list(packages.values()) + list(constants.values()) if not p.exists()]
    if missing:
        raise BackendUnavailable(f"export {entry['id']} is incomplete on disk (missing {', '.join(missing)}); run `zoo verify`")
    runtime_cls = MilRuntime if backend == "mil" else CoreMLRuntime
    return runtime_cls(packages, constants), f"export {entry['id']}"


def run(
    host: PluginHost,
    model_name: str,
    text: str,
    output: Path,
    backend: str = "torch",
    registry: Registry | None = None,
    weights: WeightsSource | None = None,
    variant: str | None = None,
    options: RunOptions | None = None,
) -> RunSummary:
    if not text.strip():
        raise ValueError("TEXT is empty")
    registry = registry or Registry()
    options = options or RunOptions()
    model = host.model(model_name)
    with tempfile.TemporaryDirectory(prefix="zoo-run-") as tmp:
        runtime, source = build_runtime(host, model_name, backend, registry, weights, variant, Path(tmp))
        start = time.perf_counter()
        result = host.call(model, "run_loop", runtime=runtime, text=text, options=options)
        wall = time.perf_counter() - start
    if not isinstance(result, RunResult):
        raise TypeError(f"run_loop must return zoo.core.RunResult, got {type(result).__name__}")
    write_wav(output, result.audio, result.sample_rate)
    return RunSummary(result, runtime, wall, source)
