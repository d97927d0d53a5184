"""What an export and a run cost, against the goals of issue 16 (full size, random weights, fp16).

    .venv/bin/python benchmarks/bench_cost.py [--models pocket_tts,kokoro,vibevoice] [--keep DIR]

Prints, measured in this run, with the goal beside each figure:
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
  process (Linux: the process's peak is reset right before the call).
`make test`'s time is measured by benchmarks/bench_suite.py. Nothing here asserts a goal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from common import measured_export, workspace_env

#: issue 16's goals: model -> (export peak RSS MB, export wall s or None)
EXPORT_GOALS = {"pocket_tts": (2000, 60), "kokoro": (2500, None), "vibevoice": (6000, 120)}
VALIDATION = ("parity:", "loop_parity", "mil:", "coreml:", "constants")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="pocket_tts,kokoro,vibevoice")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    lines: list[str] = []
    figures: dict[str, Any] = {}
    for model in args.models.split(","):
        report, _, fig = measured_export(env, work, model, "fp16")
        figures[model] = fig
        lines.extend(export_lines(model, report, fig))
        export_dir = Path(report["path"])
        measure = {"pocket_tts": pocket_figures, "kokoro": kokoro_figures, "vibevoice": vibevoice_figures}[model]
        extra = measure(export_dir)
        figures[model].update(extra)
        lines.extend(extra.pop("_lines"))
    print(json.dumps(figures, indent=1, default=str))
    print()
    print("\n".join(lines))


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
        f"{ms['torch']} ms; goal <= 2)",
    ]
    return out


def kokoro_figures(export_dir: Path) -> dict:
    from bench_kokoro import torch_vs_kmodel_and_interpreter

    out = torch_vs_kmodel_and_interpreter(export_dir, "fp16")
    seconds = out["decoder_example_frames"] / 40  # 40 frames per second of audio
    memory = {backend: in_child(decoder_call_memory, str(export_dir), backend) for backend in ("torch", "mil")}
    out.update(decoder_audio_seconds=seconds, decoder_call_mb=memory)
    ratio = memory["mil"] / memory["torch"] if memory["torch"] > 0 else float("inf")
    mil_s, torch_s = out["decoder_mil_seconds"], out["decoder_torch_seconds"]
    out["_lines"] = [
        f"kokoro torch run loop vs KModel.forward: {out['torch_speed_vs_kmodel']:.2f}x (goal >= 1.0)",
        f"kokoro MIL interpreter / torch per decoder call ({seconds:.2f} s of audio): "
        f"{out['mil_over_torch_decoder']:.2f}x ({mil_s:.2f} / {torch_s:.2f} s; goal <= 2)",
        f"kokoro decoder call peak memory, interpreter vs torch ({seconds:.2f} s of audio): {memory['mil']:.0f} / "
        f"{memory['torch']:.0f} MB = {ratio:.2f}x "
        f"({memory['mil'] / seconds:.0f} MB per second of audio; goal <= 1.5x)",
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
            "s; goal <= 2)"
        ],
    }


def in_child(fn: Callable[..., float], *args: Any) -> float:
    """``fn(*args)`` in a fresh interpreter (spawned), its result."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


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
