"""What an export, a run and the suite cost, against the goals of issue 33 (full size, random
weights, fp16; the first pass's goals, issue 16, where 33 keeps them).

    .venv/bin/python benchmarks/bench_cost.py [--models pocket_tts,kokoro,vibevoice]
        [--skip suite,runs,mixed] [--keep DIR]

Prints, measured in this run, with the goal beside each figure (every row of issue 33's table):
* `make test` and `make test-fast` (benchmarks/bench_suite.py, run first: nothing else runs
  beside it);
* per model: `zoo export MODEL --random-weights --force` wall time and peak RSS, the stages that
  raised the peak (each stage reports the process's peak when it ended), and the validation overhead
  (reference parity, loop parity and package-level stages) next to the conversion time;
* pocket_tts: the torch run loop vs upstream `TTSModel.generate_audio` (same model, voice, text,
  EOS threshold, temperature 0, both warm, timed in this process);
* kokoro: the torch run loop vs `KModel.forward` on the same phonemes and voice;
* the MIL interpreter's time per call over torch's (common.interpreter_over_torch: warm, median of
  three): pocket_tts's generation step, kokoro's decoder (its longest parity example), vibevoice's
  decoder;
* kokoro's decoder: the peak memory its first call adds, interpreter vs torch, each in a fresh
  process (Linux: the process's peak is reset right before the call; glibc maps every block of
  128 KB or more on its own there, so the figure is what the call allocates, not what the heap
  had left from loading: see ``MEASURE_ENV``);
* `zoo run --backend mil` on the export, seconds per second of audio and the process's peak
  (kokoro on a sentence; vibevoice on a 30 s and a 2 s piece, `--set max_seconds`);
* `fp16-mixed` exported after fp16 into the same stage cache (as a user would): its wall over the
  base export's, its bytes (packages + constants).
Nothing here asserts a goal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from common import measured_export, workspace_env

#: model -> (export peak RSS MB, export wall s or None): issue 33 (vibevoice 6 GB and 150 s, pocket_tts
#: 60 s), issue 16 otherwise
EXPORT_GOALS = {"pocket_tts": (2000, 60), "kokoro": (2500, None), "vibevoice": (6000, 150)}
VALIDATION = ("parity:", "loop_parity", "mil:", "coreml:", "constants")
#: the environment of the processes measuring a call's memory: glibc's heap otherwise serves the
#: call from pages loading freed, and the figure was whatever was left (kokoro's decoder, same
#: package and input, 2026-12-05: the interpreter's first call added 6.2, 13.3, 20.3 or 31.8 MB from
#: one process to the next, torch's 12.0 MB every time); every block mapped on its own, each adds
#: what it allocates, the same in every process (interpreter 31.6-31.7 MB, torch 42.7 MB)
MEASURE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
MIXED_WALL_GOAL = 2.0  # fp16-mixed export wall / its base export's (issue 33)
MIXED_MB_GOALS = {"pocket_tts": 80, "vibevoice": 600}  # packages + constants, MB (issue 33)
#: model -> [(label, `zoo run` arguments, goal on seconds per audio second or None, goal on wall
#: seconds or None, goal on peak RSS MB or None)] (issue 33)
RUNS: dict[str, list[tuple[str, list[str], float | None, float | None, float | None]]] = {
    "kokoro": [
        ("a sentence", ["Hello world. This is a benchmark of the exported Kokoro components."], 1.5, None, None)
    ],
    "vibevoice": [
        (
            "30 s",
            ["Hello there. This is a benchmark of the exported VibeVoice components.", "--set", "max_seconds=30"],
            5.0,
            None,
            3000,
        ),
        ("2 s", ["Hello there.", "--set", "max_seconds=2"], None, 30, 3000),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="pocket_tts,kokoro,vibevoice")
    parser.add_argument("--skip", default="", help="leave out: suite, runs, mixed (comma-separated)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    lines: list[str] = []
    figures: dict[str, Any] = {}
    if "suite" not in skip:
        suite = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "bench_suite.py")], capture_output=True, text=True
        )
        lines.extend(suite.stdout.rstrip().splitlines())
        print(suite.stdout, flush=True)
    for model in args.models.split(","):
        report, _, fig = measured_export(env, work, model, "fp16")
        figures[model] = fig
        lines.extend(export_lines(model, report, fig))
        export_dir = Path(report["path"])
        measure = {"pocket_tts": pocket_figures, "kokoro": kokoro_figures, "vibevoice": vibevoice_figures}[model]
        # each model's calls are timed in a fresh process: importing pocket_tts's upstream sets torch to one
        # thread for the whole process (pocket_tts/models/tts_model.py), which slowed the torch side of
        # the models measured after it (kokoro's decoder: 0.74 s instead of 0.41 s, 2026-12-04)
        extra = in_child(measure, export_dir)
        figures[model].update(extra)
        lines.extend(extra.pop("_lines"))
        if "runs" not in skip:
            for label, run_args, per_second, wall_goal, peak_goal in RUNS.get(model, []):
                run = measured_run(env, work, model, run_args)
                figures[model][f"run {label}"] = run
                lines.append(run_line(model, label, run, per_second, wall_goal, peak_goal))
        if "mixed" not in skip:
            _, _, mixed = measured_export(env, work, model, "fp16-mixed", force=False)
            figures[model]["fp16-mixed"] = mixed
            lines.append(mixed_line(model, fig, mixed))
        print("\n".join(lines[-8:]), flush=True)
    print(json.dumps(figures, indent=1, default=str))
    print()
    print("\n".join(lines))


def measured_run(env: dict, work: Path, model: str, run_args: list[str]) -> dict[str, Any]:
    """`zoo run MODEL ARGS --backend mil --json` on the fp16 export: its report's frames and audio
    seconds, the wall time and this one process's peak RSS (os.wait4: the child's own usage)."""
    cmd = [sys.executable, "-m", "zoo", "run", model, *run_args, "--variant", "fp16", "--backend", "mil"]
    cmd += ["-o", str(work / f"{model}.wav"), "--json"]
    out_file, err_file = work / f"{model}-run.json", work / f"{model}-run.err"
    start = time.perf_counter()
    with out_file.open("w") as out, err_file.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak (ru_maxrss, kB on Linux)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"zoo run {model} failed:\n{err_file.read_text()[-3000:]}")
    report = json.loads(out_file.read_text())
    peak_kb = usage.ru_maxrss
    return {
        "wall_seconds": round(wall, 1),
        "audio_seconds": round(report["audio_seconds"], 2),
        "frames": report.get("frames"),
        "peak_rss_mb": round(peak_kb / 1024),
    }


def run_line(
    model: str, label: str, run: dict, per_second: float | None, wall_goal: float | None, peak_goal: float | None
) -> str:
    def verdict(value: float, goal: float | None) -> str:
        return "" if goal is None else f" (goal <= {goal:g}: {'ok' if value <= goal else 'over'})"

    ratio = run["wall_seconds"] / max(run["audio_seconds"], 1e-9)
    return (
        f"{model} zoo run --backend mil, {label}: {run['audio_seconds']:.2f} s of audio in {run['wall_seconds']:.1f} s"
        f"{verdict(run['wall_seconds'], wall_goal)}, {ratio:.2f} s per audio second{verdict(ratio, per_second)}, "
        f"peak RSS {run['peak_rss_mb']} MB{verdict(run['peak_rss_mb'], peak_goal)}"
    )


def mixed_line(model: str, base: dict, mixed: dict) -> str:
    ratio = mixed["export_seconds"] / base["export_seconds"]
    goal_mb = MIXED_MB_GOALS.get(model)
    size = f"{mixed['total_mb']} MB (packages {mixed['packages_total_mb']} + constants {mixed['constants_mb']})"
    if goal_mb is not None:
        size += f" (goal <= {goal_mb}: {'ok' if mixed['total_mb'] <= goal_mb else 'over'})"
    return (
        f"{model} fp16-mixed export after fp16: {mixed['export_seconds']:.1f} s = {ratio:.2f}x the base export's "
        f"{base['export_seconds']:.1f} s (goal <= {MIXED_WALL_GOAL:g}x: "
        f"{'ok' if ratio <= MIXED_WALL_GOAL else 'over'}); {size}"
    )


def export_lines(model: str, report: dict, fig: dict) -> list[str]:
    rss_goal, wall_goal = EXPORT_GOALS[model]
    stages = report["stages"]
    rises, before = [], 0.0
    for stage in stages:  # how much each stage raised the process's peak (the first: from start)
        peak = stage.get("peak_rss_mb", 0.0)
        if peak > before:
            rises.append(f"{stage['stage']} +{peak - before:.0f}")
        before = max(before, peak)
    validation = sum(s["seconds"] for s in stages if s["stage"].startswith(VALIDATION))
    convert = sum(s["seconds"] for s in stages if s["stage"].startswith("convert:"))
    rss = fig["export_peak_rss_mb"]
    wall = fig["export_seconds"]
    return [
        f"{model} export peak RSS: {rss:.0f} MB (goal <= {rss_goal}: {'ok' if rss <= rss_goal else 'over'}); "
        f"stages that raised it (MB): {', '.join(rises)}",
        f"{model} export wall: {wall:.1f} s"
        + (f" (goal <= {wall_goal}: {'ok' if wall <= wall_goal else 'over'})" if wall_goal else "")
        + f"; validation {validation:.1f} s, conversion {convert:.1f} s, the rest {wall - validation - convert:.1f} s",
    ]


def pocket_figures(export_dir: Path) -> dict:
    from bench_pocket_tts import torch_vs_upstream_and_interpreter

    out = torch_vs_upstream_and_interpreter(export_dir, "fp16")
    ms = out["step_call_ms"]
    out["_lines"] = [
        f"pocket_tts torch run loop vs upstream generate_audio: {out['torch_speed_vs_upstream']:.2f}x "
        f"({out['upstream_generate_audio']['seconds']} s / {out['torch_loop']['seconds']} s, frames "
        f"{out['upstream_generate_audio']['frames']} / {out['torch_loop']['frames']}; goal >= 1.2)",
        f"pocket_tts MIL interpreter / torch per step call: {out['mil_over_torch_step']:.2f}x ({ms['mil']} / "
        f"{ms['torch']} ms, torch on {torch_threads()} threads; goal <= 2)",
    ]
    return out


def kokoro_figures(export_dir: Path) -> dict:
    from bench_kokoro import torch_vs_kmodel_and_interpreter

    out = torch_vs_kmodel_and_interpreter(export_dir, "fp16")
    seconds = out["decoder_example_frames"] / 40  # 40 frames per second of audio
    memory = {
        backend: in_child(decoder_call_memory, str(export_dir), backend, env=MEASURE_ENV)
        for backend in ("torch", "mil")
    }
    out.update(decoder_audio_seconds=seconds, decoder_call_mb=memory)
    ratio = memory["mil"] / memory["torch"] if memory["torch"] > 0 else float("inf")
    mil_s, torch_s = out["decoder_mil_seconds"], out["decoder_torch_seconds"]
    out["_lines"] = [
        f"kokoro torch run loop vs KModel.forward: {out['torch_speed_vs_kmodel']:.2f}x (goal >= 1.0)",
        f"kokoro MIL interpreter / torch per decoder call ({seconds:.2f} s of audio): "
        f"{out['mil_over_torch_decoder']:.2f}x ({mil_s:.2f} / {torch_s:.2f} s, torch on {torch_threads()} threads; "
        "goal <= 2)",
        f"kokoro decoder call peak memory, interpreter vs torch ({seconds:.2f} s of audio): {memory['mil']:.0f} / "
        f"{memory['torch']:.0f} MB = {ratio:.2f}x "
        f"({memory['mil'] / seconds:.0f} MB per second of audio; goal <= 2x)",
    ]
    return out


def vibevoice_figures(export_dir: Path) -> dict:
    from common import fp32_session, interpreter_over_torch

    from zoo.core.host.plugins import PluginHost

    decoder = fp32_session(PluginHost(), "vibevoice", "fp16").traceables()["decoder"]["main"]
    torch_s, mil_s = interpreter_over_torch(decoder, export_dir / "decoder.mlpackage", example=decoder.examples[-1])
    return {
        "decoder_torch_s": round(torch_s, 3),
        "decoder_mil_s": round(mil_s, 3),
        "_lines": [
            f"vibevoice MIL interpreter / torch per decoder call: {mil_s / torch_s:.2f}x ({mil_s:.2f} / {torch_s:.2f} "
            f"s, torch on {torch_threads()} threads; goal <= 2)"
        ],
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def in_child(fn: Callable[..., Any], *args: Any, env: dict[str, str] | None = None) -> Any:
    """``fn(*args)`` in a fresh interpreter (spawned, with ``env`` added to its environment), its
    result; the child may spawn its own (its process is not a daemon, as a multiprocessing.Pool's
    are)."""
    from concurrent.futures import ProcessPoolExecutor

    # as zoo's CLI sets it before numpy loads (core/cli/app.main): OpenBLAS's idle threads would
    # otherwise spin on the cores the interpreter's own loops run on (pocket's step call: 1.87x
    # torch with them spinning, at 2bcf3c5)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process (kB; Linux)."""
    with open("/proc/self/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}


def decoder_call_memory(export_dir: str, backend: str) -> float:
    """MB one kokoro decoder call adds to the process's peak (its last parity example)."""
    from common import fp32_session

    from zoo.core.host.plugins import PluginHost

    decoder = fp32_session(PluginHost(), "kokoro", "fp16").traceables()["decoder"]["main"]
    example = decoder.examples[-1]
    if backend == "torch":
        call = lambda: decoder.run(example)  # noqa: E731
    else:
        from zoo.core.mil import MilProgram

        program = MilProgram.load(Path(export_dir) / "decoder.mlpackage")
        call = lambda: program.run(example)  # noqa: E731
    # the first call: a warm-up would leave its freed memory in the allocator's pools (torch's
    # heap is not returned to the system), and the measured call would seem to need nothing
    before = _memory()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) starts again from the current RSS
    call()
    return (_memory()["VmHWM"] - before) / 1024


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
