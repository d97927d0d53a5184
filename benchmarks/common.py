"""What the benchmark scripts share: a private registry and cache, `zoo` in a subprocess, a measured export."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomlkit


def workspace(doc: str, prefix: str) -> tuple[argparse.Namespace, Path, dict[str, str]]:
    """Parse ``--variant`` / ``--keep`` and give the work directory and the environment pointing zoo at it."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="fp16")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return args, work, workspace_env(work)


def workspace_env(work: Path) -> dict[str, str]:
    """The environment pointing zoo's registry and stage cache into ``work``."""
    return {
        **os.environ,
        "ZOO_REGISTRY": str(work / "registry.toml"),
        "ZOO_CACHE": str(work / "cache"),
        "TQDM_DISABLE": "1",
    }


def zoo_process(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`zoo ARGS` in a subprocess, whatever its exit code (a benchmark of refusals reads their reports)."""
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd, env=env, capture_output=True, text=True)


def zoo(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`zoo ARGS` in a subprocess; the benchmark stops with its stderr if it fails."""
    proc = zoo_process(env, cwd, *args)
    if proc.returncode:
        sys.exit(f"zoo {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def export_args(work: Path, model: str, variant: str, *extra: str) -> list[str]:
    """`zoo export MODEL --random-weights --variant VARIANT EXTRA --out WORK/exports --json`."""
    return ["export", model, "--random-weights", "--variant", variant, *extra, "--out", str(work / "exports"), "--json"]


def measured_export(
    env: dict, work: Path, model: str, variant: str, force: bool = True, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """`zoo export MODEL --random-weights --force` (every stage built again; without ``force``,
    what the workspace's stage cache holds is reused; ``extra``: more arguments, e.g.
    ``--checkpoint NAME``): (report, registry entry, figures)."""
    start = time.perf_counter()
    report = json.loads(
        zoo(env, work, *export_args(work, model, variant, *(["--force"] if force else []), *extra)).stdout
    )
    figures: dict[str, Any] = {"variant": variant, "export_seconds": round(time.perf_counter() - start, 1)}
    # the export's own peak: each stage reports its process's peak when it ended (RUSAGE_CHILDREN
    # would be the largest of every child this benchmark ran so far)
    peaks = [s.get("peak_rss_mb", 0.0) for s in report["stages"]]
    figures["export_peak_rss_mb"] = (
        round(max(peaks)) if any(peaks) else round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    )
    figures["stages"] = {s["stage"]: round(s["seconds"], 1) for s in report["stages"]}
    figures["stage_peak_rss_mb"] = {s["stage"]: round(s.get("peak_rss_mb", 0.0)) for s in report["stages"]}
    entry = next(
        e for e in tomlkit.parse((work / "registry.toml").read_text()).unwrap()["exports"] if e["id"] == report["id"]
    )
    figures["package_bytes"] = {c["name"]: c["bytes"] for c in entry["components"]}
    figures["packages_total_mb"] = round(sum(figures["package_bytes"].values()) / 1e6, 1)
    figures["constants_mb"] = round(sum(c["bytes"] for c in entry["constants"]) / 1e6, 2)
    figures["total_mb"] = round(figures["packages_total_mb"] + figures["constants_mb"], 1)
    figures["validation"] = [
        f"{v['level']}/{v['component']}: {v.get('metric', '')} {v.get('value', '')} (bound {v.get('threshold', '-')}"
        f"{'; ' + v['basis'] if v.get('basis') else ''}) {v['status']}"
        for v in entry["validation"]
    ]
    return report, entry, figures


def export_and_speak(
    doc: str, model: str, text: str, keys: tuple[str, ...], *run_args: str
) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A measured export of ``model`` (``--variant`` from the command line), then ``zoo run`` on it
    with the MIL interpreter: (arguments, export report, figures, run report)."""
    args, work, env = workspace(doc, f"zoo-bench-{model}-")
    report, _, results = measured_export(env, work, model, args.variant)
    run = json.loads(
        zoo(env, work, "run", model, text, "-o", str(work / "mil.wav"), "--backend", "mil", *run_args, "--json").stdout
    )
    results["mil_run"] = {k: run[k] for k in keys}
    return args, report, results, run


def fp32_session(host: Any, model: str, variant: str) -> Any:
    """A model session on the variant's architecture with seeded random weights (seed 0), its
    traceables in fp32 (the torch side of a benchmark runs at upstream's precision)."""
    import dataclasses

    from zoo.core import WeightsSource
    from zoo.core.host.session import ModelSession

    spec = host.model(model).variant(variant)
    return ModelSession(host, model, dataclasses.replace(spec, precision="fp32"), WeightsSource.random(0))


def per_call(run: Any, repeats: int = 3) -> float:
    """Median seconds of ``run()`` after one warm-up call."""
    import statistics

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interpreter_over_torch(
    traceable: Any, package: Path, function: str = "main", example: dict | None = None, held: tuple[str, ...] = ()
) -> tuple[float, float]:
    """(torch seconds, MIL interpreter seconds) per call of one function on one example (default:
    its first), each warm, the median of three; a stateful function starts from fresh states.
    Inputs named in ``held`` reach the interpreter in the package's declared dtype, as the run
    loop holds them (pocket_tts's KV cache)."""
    from zoo.core.mil import MilProgram

    example = example if example is not None else traceable.examples[0]
    program = MilProgram.load(package)
    declared = program.function(function).inputs
    mil_example = {k: (v.astype(declared[k].dtype) if k in held else v) for k, v in example.items()}

    def mil() -> Any:
        state = program.make_state(function) if program.function(function).states else None
        return program.run(mil_example, function, state)

    return per_call(lambda: traceable.run(example)), per_call(mil)
