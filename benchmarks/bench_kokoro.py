"""Benchmark of the full-size kokoro export and run (random weights, offline espeak G2P).

    .venv/bin/python benchmarks/bench_kokoro.py [--variant fp16] [--keep DIR]

Prints, measured in this run:
* export wall time and peak RSS of `zoo export kokoro --random-weights` (fresh cache),
  package bytes per component and in total, constants bytes, the validation records;
* `zoo run kokoro TEXT --backend mil --json` on the export (offline G2P): wall time, audio seconds;
* the torch-backend run loop vs `KModel.forward` on the same phonemes, voice and model, timed
  in this process (speed ratio), and their whole-utterance difference with the same noise;
* MIL interpreter time vs the torch traceable per decoder call (its longer parity example; warm,
  median of three).
Nothing here asserts a goal: the figures are for the issue's closing note.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from common import export_and_speak, fp32_session, interpreter_over_torch

from zoo.plugins.kokoro.options import RUN_SETTINGS

TEXT = "Hello world. This is a benchmark of the exported Kokoro components."


def main() -> None:
    args, report, results, run = export_and_speak(
        __doc__, "kokoro", TEXT, ("frames", "audio_seconds", "wall_seconds", "calls", "info")
    )

    results.update(torch_vs_kmodel_and_interpreter(Path(report["path"]), args.variant))
    print(json.dumps(results, indent=1, ensure_ascii=False))
    print()
    print(f"export: {results['export_seconds']} s, peak RSS {results['export_peak_rss_mb']} MB")
    print(
        f"size: packages {results['packages_total_mb']} MB ({results['package_bytes']}) + constants "
        f"{results['constants_mb']} MB"
    )
    print(f"zoo run --backend mil: {run['audio_seconds']:.2f} s of audio in {run['wall_seconds']:.2f} s")
    print(
        f"torch loop vs KModel.forward: {results['torch_speed_vs_kmodel']:.2f}x; whole utterance rel. difference "
        f"{results['torch_vs_kmodel_rel']:.2e}"
    )
    print(f"MIL interpreter / torch per decoder call: {results['mil_over_torch_decoder']:.2f}x")


def torch_vs_kmodel_and_interpreter(export_dir: Path, variant: str) -> dict:
    import numpy as np
    import torch

    from zoo.core import RunOptions
    from zoo.core.host.plugins import PluginHost
    from zoo.plugins.kokoro import loop
    from zoo.plugins.kokoro.decoder import deterministic_upstream

    session = fp32_session(PluginHost(), "kokoro", variant)
    kref = session.reference().model
    runtime = session.torch_runtime(Path(tempfile.mkdtemp()))
    phonemes = loop.phonemize(TEXT)
    voice = kref.voices["random"]
    settings = RunOptions(seed=5, settings={"phonemes": phonemes}).resolved(RUN_SETTINGS, "kokoro")

    loop.run(runtime, "x", RunOptions(settings={"phonemes": "həlˈO"}).resolved(RUN_SETTINGS, "kokoro"))  # warm up
    with torch.no_grad():
        kref.model(phonemes[:5], voice[4], 1)
    ours_times, kmodel_times = [], []
    for _ in range(3):  # alternated, so that a busy moment of the machine hits both; medians
        start = time.perf_counter()
        ours = loop.run(runtime, "x", settings)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            kref.model(phonemes, voice[len(phonemes) - 1], 1)
        kmodel_times.append(time.perf_counter() - start)
    ours_s, kmodel_s = statistics.median(ours_times), statistics.median(kmodel_times)
    noise = np.random.default_rng(5).standard_normal((1, len(ours.audio), 9)).astype(np.float32)
    with torch.no_grad(), deterministic_upstream(kref.model, noise):
        want = kref.model(phonemes, voice[len(phonemes) - 1], 1).numpy().reshape(-1)
    rel = (
        float(np.abs(ours.audio - want).max() / np.abs(want).max()) if want.shape == ours.audio.shape else float("inf")
    )

    decoder = session.traceables()["decoder"]["main"]
    example = decoder.examples[-1]  # the longer parity example
    torch_call, mil_call = interpreter_over_torch(decoder, export_dir / "decoder.mlpackage", example=example)
    return {
        "phonemes": phonemes,
        "torch_loop_seconds": round(ours_s, 3),
        "kmodel_forward_seconds": round(kmodel_s, 3),
        "torch_speed_vs_kmodel": kmodel_s / ours_s,
        "torch_vs_kmodel_rel": rel,
        "decoder_example_frames": int(example["en"].shape[2]),
        "decoder_torch_seconds": round(torch_call, 3),
        "decoder_mil_seconds": round(mil_call, 3),
        "mil_over_torch_decoder": mil_call / torch_call,
    }


if __name__ == "__main__":
    main()
