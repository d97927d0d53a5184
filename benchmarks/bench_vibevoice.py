"""Benchmark of the full-size vibevoice export and run (random weights, no network).

    .venv/bin/python benchmarks/bench_vibevoice.py [--variant fp16] [--keep DIR]

Prints, measured in this run:
* export wall time and peak RSS of `zoo export vibevoice --random-weights` (fresh cache),
  parameters, package bytes per component and in total, constants bytes, the validation records;
* `zoo run vibevoice --backend mil --json` on the export: latents, calls per second of audio, wall time;
* the Neural Engine layout of the lm against transformers' Qwen2Model at full size (max difference,
  fp32 cache, in torch);
* MIL interpreter time vs the torch traceable for one tts_lm call and one decoder call.
Nothing here asserts a goal: the figures are for the issue's closing note.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import export_and_speak, fp32_session

TEXT = "Hello there. This is a benchmark of the exported VibeVoice components."


def main() -> None:
    args, report, results, run = export_and_speak(
        __doc__,
        "vibevoice",
        TEXT,
        ("frames", "audio_seconds", "wall_seconds", "calls", "calls_per_audio_second"),
        "--set",
        "max_seconds=4",
    )
    results["package_mb"] = {name: round(size / 1e6, 1) for name, size in results["package_bytes"].items()}

    results.update(layout_and_interpreter(Path(report["path"]), args.variant))
    print(json.dumps(results, indent=1))
    print()
    print(
        f"export: {results['export_seconds']} s, peak RSS {results['export_peak_rss_mb']} MB, "
        f"{results['params'] / 1e6:.0f}M parameters built"
    )
    print(
        f"size: packages {results['packages_total_mb']} MB {results['package_mb']} + constants "
        f"{results['constants_mb']} MB"
    )
    print(
        f"zoo run --backend mil: {run['frames']} latents, {run['audio_seconds']:.2f} s of audio in "
        f"{run['wall_seconds']:.1f} s, {run['calls_per_audio_second']:.1f} calls per audio second"
    )
    print(
        f"ANE-layout lm vs transformers Qwen2 (fp32 cache, full size): max abs {results['ane_lm_max_abs']:.2e} "
        f"(hidden max {results['ane_lm_scale']:.2f})"
    )
    print(
        f"MIL interpreter / torch per call: tts_lm {results['mil_over_torch_tts_lm']:.2f}x, decoder "
        f"{results['mil_over_torch_decoder']:.2f}x"
    )


def layout_and_interpreter(export_dir: Path, variant: str) -> dict:
    import numpy as np
    import torch
    from transformers import DynamicCache

    from zoo.core.host.plugins import PluginHost
    from zoo.core.mil import MilProgram
    from zoo.plugins.vibevoice.lm import from_qwen2

    session = fp32_session(PluginHost(), "vibevoice", variant)
    loaded = session.reference()
    model = loaded.model
    cfg = model.cfg["decoder"]
    ane = from_qwen2(model.lm, cfg, 32, 256, final_norm=False)  # fp32 cache: the layout alone
    ids = torch.randint(0, cfg["vocab_size"], (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.lm(input_ids=ids, past_key_values=DynamicCache(), use_cache=True).last_hidden_state[0]
        rows = model.lm.embed_tokens(ids).transpose(1, 2).unsqueeze(2)  # the host's look-up: [1, C, 1, 32]
        got = ane(rows, torch.tensor([0], dtype=torch.int32), torch.tensor([32], dtype=torch.int32))[0, :, 0, :].T
    out = {
        "params": loaded.info["params"],
        "ane_lm_max_abs": float((got - want).abs().max()),
        "ane_lm_scale": float(want.abs().max()),
    }

    for name in ("tts_lm", "decoder"):
        traceable = session.traceables()[name]["main"]
        example = traceable.examples[-1]
        start = time.perf_counter()
        traceable.run(example)
        torch_call = time.perf_counter() - start
        program = MilProgram.load(export_dir / f"{name}.mlpackage")
        state = program.make_state() if program.function().states else None
        start = time.perf_counter()
        program.run(example, state=state)
        out[f"mil_over_torch_{name}"] = (time.perf_counter() - start) / torch_call
    del np
    return out


if __name__ == "__main__":
    main()
