"""Benchmark of the full-size pocket_tts export, run and interpreter (random weights, no network).

    .venv/bin/python benchmarks/bench_pocket_tts.py [--variant fp16] [--keep DIR]

Prints, measured in this run:
* export wall time and peak RSS of `zoo export pocket_tts --random-weights` (fresh cache),
  package bytes per component and in total, constants bytes;
* `zoo run --backend mil --json`: calls per second of audio;
* the torch-backend run loop vs upstream `TTSModel.generate_audio` on the same model, voice,
  text and EOS threshold at temperature 0 (speed ratio, and both frame counts);
* MIL interpreter time per call vs the torch traceable for the generation step (flowlm.step;
  warm, median of three).
Goals (from the issues) are printed next to the figures; nothing here asserts them.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import export_and_speak, fp32_session, interpreter_over_torch

from zoo.plugins.pocket_tts.options import RUN_SETTINGS

#: timed runs of each loop (the median is reported)
REPEATS = 3
TEXT = "Hello there. This is a benchmark of the exported PocketTTS components, one frame at a time."


def main() -> None:
    args, report, results, run = export_and_speak(
        __doc__, "pocket_tts", TEXT, ("frames", "audio_seconds", "wall_seconds", "calls", "calls_per_audio_second")
    )

    results.update(torch_vs_upstream_and_interpreter(Path(report["path"]), args.variant))
    print(json.dumps(results, indent=1))
    print()
    print(
        f"export: {results['export_seconds']} s (goal <= 120), peak RSS {results['export_peak_rss_mb']} MB (goal <= "
        "4096)"
    )
    print(
        f"size: packages {results['packages_total_mb']} MB + constants {results['constants_mb']} MB = "
        f"{results['total_mb']} MB (goal <= 200 for fp16)"
    )
    print(
        f"calls per second of audio (mil run): {results['mil_run']['calls_per_audio_second']:.1f} (goal <= 25; seed "
        "design ~125)"
    )
    print(f"torch loop vs upstream generate_audio: {results['torch_speed_vs_upstream']:.2f}x (goal >= 1.0)")
    print(f"MIL interpreter / torch per step call: {results['mil_over_torch_step']:.2f}x (goal <= 5)")


def torch_vs_upstream_and_interpreter(export_dir: Path, variant: str) -> dict:
    import numpy as np

    from zoo.core import RunOptions
    from zoo.core.host.plugins import PluginHost
    from zoo.plugins.pocket_tts import loop

    session = fp32_session(PluginHost(), "pocket_tts", variant)
    ref = session.reference().model
    runtime = session.torch_runtime(Path(tempfile.mkdtemp()))

    probe = loop.run(
        runtime,
        TEXT,
        RunOptions(settings={"temperature": "0", "eos_threshold": "1e9"}).resolved(RUN_SETTINGS, "pocket_tts"),
    )
    logits = [v for c in probe.info["chunks"] for v in c["eos_logits"][6:]]
    threshold = float(np.quantile(logits, 0.9))  # EOS somewhere inside the generation
    settings = {"temperature": "0", "eos_threshold": str(threshold)}
    tts = copy.copy(ref.tts)
    tts.temp, tts.eos_threshold = 0.0, threshold
    loop.run(runtime, "Warm up.", RunOptions(settings=settings).resolved(RUN_SETTINGS, "pocket_tts"))
    tts.generate_audio(ref.voices["random"], "Warm up.")
    ours_times, up_times = [], []
    for _ in range(REPEATS):  # alternated, so that a busy moment of the machine hits both
        start = time.perf_counter()
        ours = loop.run(runtime, TEXT, RunOptions(settings=settings).resolved(RUN_SETTINGS, "pocket_tts"))
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        up = tts.generate_audio(ref.voices["random"], TEXT)
        up_times.append(time.perf_counter() - start)
    ours_s, up_s = statistics.median(ours_times), statistics.median(up_times)

    step = session.traceables()["flowlm"]["step"]
    torch_call, mil_call = interpreter_over_torch(step, export_dir / "flowlm.mlpackage", "step", held=("kv",))
    return {
        "torch_loop": {"seconds": round(ours_s, 2), "frames": ours.frames, "audio_seconds": len(ours.audio) / 24000},
        "upstream_generate_audio": {"seconds": round(up_s, 2), "frames": int(up.shape[-1] // 1920)},
        "torch_speed_vs_upstream": up_s / ours_s,
        "step_call_ms": {"torch": round(torch_call * 1000, 1), "mil": round(mil_call * 1000, 1)},
        "mil_over_torch_step": mil_call / torch_call,
    }


if __name__ == "__main__":
    main()
